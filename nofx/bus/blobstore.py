"""Large payloads stored once, by content (sha256), and referenced from messages and context."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError

from nofx.store.schema import blobs

INLINE_LIMIT = 64 * 1024


# one encoder for every call: ``json.dumps`` with options builds a new one each time, which
# cost more than encoding a small message body
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


def canonical(value: Any) -> bytes:
    """Compact JSON with sorted keys: what a blob's sha256 is taken of."""
    return _CANONICAL.encode(value).encode()


def put_if_large(conn: Connection, value: Any, limit: int = INLINE_LIMIT) -> tuple[Any, str | None]:
    """(inline value, None) for small values; (None, sha256) after storing a large one once."""
    raw = canonical(value)
    if len(raw) <= limit:
        return value, None
    return None, put_raw(conn, value, raw)


def put_raw(conn: Connection, value: Any, raw: bytes) -> str:
    """Store ``value`` (whose canonical JSON is ``raw``) once by content; its sha256."""
    digest = hashlib.sha256(raw).hexdigest()
    if conn.execute(select(blobs.c.sha256).where(blobs.c.sha256 == digest)).first() is None:
        try:
            with conn.begin_nested():
                conn.execute(blobs.insert().values(sha256=digest, size=len(raw), data=value))
        except IntegrityError:  # pragma: no cover - a concurrent writer stored the same content
            pass
    return digest


def get(conn: Connection, digest: str) -> Any:
    return conn.execute(select(blobs.c.data).where(blobs.c.sha256 == digest)).scalar_one()
