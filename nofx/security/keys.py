"""API keys: shown once, stored hashed, scoped, revocable.

A key looks like ``nofx_<key_id>_<secret>``. Only sha256(secret) is stored; the
secret has 256 bits of entropy, so a fast hash is safe (as for GitHub tokens)
and verification stays cheap on every request. Comparison is constant-time.

Verification reads the key's row; a verified key is then remembered for ``cache_s`` (one
second by default), keyed by the sha256 of the whole presented key, so the next requests
with the same key need no store read (issue 12). Only a key that verified is remembered:
a wrong secret digests differently and is read and refused as before. Revoking a key
forgets it in this process at once; another process stops accepting it within ``cache_s``.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import func, insert, select, update

from nofx.data_contract import StreamType
from nofx.domain import NewEvent, utcnow
from nofx.errors import NofxError, NotFoundError, ValidationError
from nofx.store import EventStore, Transaction
from nofx.store.event_store import as_utc
from nofx.store.schema import api_keys

PREFIX = "nofx"


class Scope(StrEnum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"
    METRICS = "metrics"
    """Reads /metrics, whose counts cover every tenant: an operator's scope, granted with
    ``nofx keys create --scope metrics``; no tenant admin can mint it, and admin does not
    imply it."""


TENANT_SCOPES = frozenset({Scope.READ, Scope.WRITE, Scope.ADMIN})


IMPLIED = {
    Scope.ADMIN: {Scope.ADMIN, Scope.WRITE, Scope.READ},
    Scope.WRITE: {Scope.WRITE, Scope.READ},
}


def expand(scopes: set[Scope]) -> frozenset[Scope]:
    """admin implies write implies read."""
    out: set[Scope] = set()
    for scope in scopes:
        out |= IMPLIED.get(scope, {scope})
    return frozenset(out)


class AuthenticationError(NofxError):
    code = "unauthenticated"
    http_status = 401
    headers = {"WWW-Authenticate": "Bearer"}


class PermissionDenied(NofxError):
    code = "forbidden"
    http_status = 403


@dataclass(frozen=True)
class Principal:
    """Who is calling: a tenant and what it may do."""

    tenant_id: str
    scopes: frozenset[Scope]
    key_id: str | None = None
    rate_per_s: float = 50.0
    burst: float = 100.0

    def require(self, scope: Scope) -> None:
        if scope not in self.scopes:
            raise PermissionDenied(
                f"this API key lacks the {scope.value!r} scope",
                hint="ask an admin for a key with that scope (nofx keys create --scope ...)",
            )


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    tenant_id: str
    name: str
    scopes: frozenset[Scope]
    rate_per_s: float
    burst: float
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class IssuedKey:
    """The one moment the plaintext exists: give it to the user, then forget it."""

    key: ApiKey
    plaintext: str


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse(plaintext: str) -> tuple[str, str]:
    parts = plaintext.split("_")
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
        raise AuthenticationError(
            "the API key is malformed",
            hint="send the whole key: Authorization: Bearer nofx_<id>_<secret>",
        )
    return parts[1], parts[2]


def _row_to_key(row: object) -> ApiKey:
    r = row._mapping  # type: ignore[attr-defined]
    return ApiKey(
        key_id=r["key_id"],
        tenant_id=r["tenant_id"],
        name=r["name"],
        scopes=frozenset(Scope(s) for s in r["scopes"]),
        rate_per_s=r["rate_per_s"],
        burst=r["burst"],
        created_at=as_utc(r["created_at"]),
        revoked_at=as_utc(r["revoked_at"]) if r["revoked_at"] else None,
    )


class ApiKeyService:
    def __init__(
        self, store: EventStore, *, cache_s: float = 1.0, cache_size: int = 10_000
    ) -> None:
        self.store = store
        self.cache_s = cache_s
        self.cache_size = cache_size
        # sha256(presented key) -> (principal, monotonic time it stops being trusted)
        self._verified: dict[bytes, tuple[Principal, float]] = {}
        self._cache_lock = threading.Lock()

    def create(
        self,
        tenant_id: str,
        name: str,
        scopes: set[Scope],
        *,
        rate_per_s: float = 50.0,
        burst: float = 100.0,
    ) -> IssuedKey:
        if not scopes:
            raise ValidationError("a key needs at least one scope", hint="use read, write or admin")
        if rate_per_s <= 0 or burst < 1:
            raise ValidationError("rate_per_s must be > 0 and burst >= 1")
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32).replace("_", "-")
        now = utcnow()
        values = {
            "key_id": key_id,
            "tenant_id": tenant_id,
            "name": name,
            "secret_hash": _hash(secret),
            "scopes": sorted(s.value for s in scopes),
            "rate_per_s": rate_per_s,
            "burst": burst,
            "created_at": now,
            "revoked_at": None,
        }

        def write(tx: Transaction) -> None:
            tx.conn.execute(insert(api_keys).values(**values))
            tx.append(
                f"apikey-{key_id}",
                StreamType.API_KEY,
                tenant_id,
                [
                    NewEvent(
                        type="ApiKeyCreated",
                        payload={"key_id": key_id, "name": name, "scopes": values["scopes"]},
                    )
                ],
            )

        self.store.call(write)
        return IssuedKey(self.get(key_id), f"{PREFIX}_{key_id}_{secret}")

    def get(self, key_id: str) -> ApiKey:
        with self.store.engine.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.key_id == key_id)).first()
        if row is None:
            raise NotFoundError(f"no API key {key_id!r}")
        return _row_to_key(row)

    def count_active(self, tenant_id: str) -> int:
        """Keys of the tenant that are not revoked (the operator caps them per tenant)."""
        query = (
            select(func.count())
            .select_from(api_keys)
            .where(api_keys.c.tenant_id == tenant_id, api_keys.c.revoked_at.is_(None))
        )
        with self.store.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def list(self, tenant_id: str | None = None) -> builtins.list[ApiKey]:
        query = select(api_keys).order_by(api_keys.c.created_at)
        if tenant_id is not None:
            query = query.where(api_keys.c.tenant_id == tenant_id)
        with self.store.engine.connect() as conn:
            return [_row_to_key(r) for r in conn.execute(query)]

    def revoke(self, key_id: str) -> ApiKey:
        key = self.get(key_id)

        def write(tx: Transaction) -> None:
            tx.conn.execute(
                update(api_keys).where(api_keys.c.key_id == key_id).values(revoked_at=utcnow())
            )
            tx.append(
                f"apikey-{key_id}",
                StreamType.API_KEY,
                key.tenant_id,
                [NewEvent(type="ApiKeyRevoked", payload={"key_id": key_id})],
            )

        self.forget(key_id)  # before and after the commit: no request verified in between stays
        self.store.call(write)
        self.forget(key_id)
        return self.get(key_id)

    def forget(self, key_id: str) -> None:
        """Drop the remembered verifications of ``key_id`` (its next use reads the store)."""
        with self._cache_lock:
            for digest in [d for d, (p, _) in self._verified.items() if p.key_id == key_id]:
                del self._verified[digest]

    def cached(self, plaintext: str | None) -> Principal | None:
        """The principal of a key verified less than ``cache_s`` ago; None when only the store
        can say (never a refusal: a miss is verified by ``authenticate``)."""
        if not plaintext:
            return None
        digest = hashlib.sha256(plaintext.encode()).digest()
        with self._cache_lock:
            entry = self._verified.get(digest)
        if entry is None or time.monotonic() >= entry[1]:
            return None
        return entry[0]

    def _remember(self, plaintext: str, principal: Principal, since: float) -> None:
        digest = hashlib.sha256(plaintext.encode()).digest()
        with self._cache_lock:
            if len(self._verified) >= self.cache_size:
                now = time.monotonic()
                for d in [d for d, (_, until) in self._verified.items() if until <= now]:
                    del self._verified[d]
                while len(self._verified) >= self.cache_size:  # all fresh: drop the oldest
                    del self._verified[next(iter(self._verified))]
            self._verified[digest] = (principal, since + self.cache_s)

    def authenticate(self, plaintext: str | None) -> Principal:
        """The principal behind a key; a missing, unknown, wrong or revoked key is refused alike."""
        if not plaintext:
            raise AuthenticationError(
                "an API key is required", hint="send Authorization: Bearer nofx_<id>_<secret>"
            )
        principal = self.cached(plaintext)
        if principal is not None:
            return principal
        key_id, secret = parse(plaintext)
        # the trust runs from before the read: a revocation committed after it is honoured
        # within cache_s of the read, never later
        since = time.monotonic()
        with self.store.engine.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.key_id == key_id)).first()
        expected = row._mapping["secret_hash"] if row is not None else _hash("no-such-key")
        valid = hmac.compare_digest(expected, _hash(secret))
        if row is None or not valid or row._mapping["revoked_at"] is not None:
            raise AuthenticationError("the API key is not valid (unknown, wrong or revoked)")
        key = _row_to_key(row)
        principal = Principal(
            key.tenant_id, expand(set(key.scopes)), key.key_id, key.rate_per_s, key.burst
        )
        self._remember(plaintext, principal, since)
        return principal
