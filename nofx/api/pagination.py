"""Opaque cursors: a small JSON position, signed, so clients can neither depend on its shape
nor forge one.

``encode`` gives ``<base64 json>.<base64 hmac>``; ``decode`` checks the signature with the
server's secret and then the position's fields against the list's own schema, so a
malformed, tampered, truncated or out-of-range cursor is a 422 that says to list again,
never a 500. The secret is ``NOFX_API_CURSOR_SECRET`` or, when unset, a random one kept in
``<NOFX_HOME>/api-cursor.key`` (made once, mode 0600), so every worker on one host agrees.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from nofx.errors import ValidationError

T = TypeVar("T")
SECRET_ENV = "NOFX_API_CURSOR_SECRET"
SECRET_FILE = "api-cursor.key"
MAX_OFFSET = 10_000_000
_secret: bytes = secrets.token_bytes(32)  # replaced by configure(); tests use this one

Field = Callable[[Any], bool]


def configure(home: Path | None, secret: str | None = None) -> None:
    """Load (or create once) the signing secret; called when the app is built with the
    operator's ``NOFX_API_CURSOR_SECRET`` (``Settings.cursor_secret``), if any."""
    global _secret
    if secret:
        _secret = hashlib.sha256(secret.encode()).digest()
        return
    if home is None:
        return
    path = home / SECRET_FILE
    try:
        _secret = bytes.fromhex(path.read_text().strip())
        return
    except (OSError, ValueError):
        pass
    home.mkdir(parents=True, exist_ok=True)
    fresh = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(fresh.hex())
        _secret = fresh
    except FileExistsError:  # another worker wrote it first: use theirs
        _secret = bytes.fromhex(path.read_text().strip())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(payload: str) -> str:
    return _b64(hmac.new(_secret, payload.encode(), hashlib.sha256).digest()[:16])


def encode(position: dict[str, Any]) -> str:
    payload = _b64(json.dumps(position, separators=(",", ":")).encode())
    return f"{payload}.{_sign(payload)}"


def _invalid(why: str) -> ValidationError:
    return ValidationError(
        f"the cursor is not valid ({why})",
        hint="pass next_cursor from the previous page unchanged, or list again without one",
    )


def decode(cursor: str | None, fields: Mapping[str, Field] | None = None) -> dict[str, Any] | None:
    """The position behind a cursor (None without one), with exactly ``fields``, each
    accepted by its check; anything else is a 422."""
    if not cursor:
        return None
    payload, dot, signature = cursor.partition(".")
    if not dot or not hmac.compare_digest(_sign(payload), signature):
        raise _invalid("it was not issued by this server or was changed")
    try:
        value = json.loads(_unb64(payload))
    except (ValueError, binascii.Error, RecursionError) as exc:
        raise _invalid("it cannot be read") from exc
    if not isinstance(value, dict):
        raise _invalid("it cannot be read")
    if fields is not None:
        if set(value) != set(fields):
            raise _invalid("it belongs to another list")
        for name, check in fields.items():
            try:
                ok = check(value[name])
            except (TypeError, ValueError, OverflowError):
                ok = False
            if not ok:
                raise _invalid(f"its {name!r} is out of range")
    return value


def text(max_length: int = 200) -> Field:
    return lambda v: isinstance(v, str) and 0 < len(v) <= max_length


def timestamp(v: Any) -> bool:
    return isinstance(v, str) and len(v) <= 40 and datetime.fromisoformat(v) is not None


def count(maximum: int = MAX_OFFSET) -> Field:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= maximum


AFTER_ID = {"after": text(100)}
NEWEST_FIRST = {"t": timestamp, "id": text(100)}


def page(
    items: list[T], limit: int, position_of: Callable[[T], dict[str, Any]]
) -> tuple[list[T], str | None]:
    """A page from ``limit + 1`` fetched items: the first ``limit``, and the cursor of the
    next page when there is one (the extra item says so without a count query)."""
    if len(items) <= limit:
        return items, None
    kept = items[:limit]
    return kept, encode(position_of(kept[-1]))
