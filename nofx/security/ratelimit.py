"""Token-bucket rate limits per API key: a pure bucket, and two places to keep buckets.

``RateLimiter`` keeps them in the process (fast, but each API process would allow the full
rate). ``SharedRateLimiter`` keeps them in the store, one row per key updated under a row
lock, so every API process and uvicorn worker sharing the database enforces one limit.
Times are wall-clock seconds (``time.time()``): monotonic clocks differ between processes.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from nofx.store import EventStore
from nofx.store.schema import rate_buckets


@dataclass(frozen=True)
class TokenBucket:
    """``rate`` tokens per second up to ``burst``; each request takes one token."""

    rate: float
    burst: float
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate: float, burst: float, now: float) -> TokenBucket:
        return cls(rate, burst, burst, now)

    def take(self, now: float, cost: float = 1.0) -> tuple[TokenBucket, bool, float]:
        """(new bucket, allowed, seconds until a token is free when refused)."""
        elapsed = max(0.0, now - self.updated)
        tokens = min(self.burst, self.tokens + elapsed * self.rate)
        if tokens >= cost:
            return TokenBucket(self.rate, self.burst, tokens - cost, now), True, 0.0
        wait = (cost - tokens) / self.rate
        return TokenBucket(self.rate, self.burst, tokens, now), False, wait


class Limiter(Protocol):
    def check(self, key: str, rate: float, burst: float, now: float) -> tuple[bool, int]:
        """(allowed, Retry-After in whole seconds, at least 1 when refused)."""
        ...


def _retry_after(allowed: bool, wait: float) -> int:
    return 0 if allowed else max(1, math.ceil(wait))


class RateLimiter:
    """One bucket per key, kept in this process (one process: tests, a single API server)."""

    def __init__(self) -> None:
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def check(self, key: str, rate: float, burst: float, now: float) -> tuple[bool, int]:
        """(allowed, Retry-After in whole seconds, at least 1 when refused)."""
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None or bucket.rate != rate or bucket.burst != burst:
                bucket = TokenBucket.full(rate, burst, now)
            bucket, allowed, wait = bucket.take(now)
            self._buckets[key] = bucket
        return allowed, _retry_after(allowed, wait)


class SharedRateLimiter:
    """Buckets in the store's ``rate_buckets`` table: one limit for all API processes."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def check(self, key: str, rate: float, burst: float, now: float) -> tuple[bool, int]:
        """(allowed, Retry-After in whole seconds, at least 1 when refused)."""
        for _ in range(3):
            try:
                return self._take(key, rate, burst, now)
            except IntegrityError:
                continue  # two processes created the same bucket at once: read it again
        raise RuntimeError(f"rate bucket {key!r} could not be created")  # pragma: no cover

    def _take(self, key: str, rate: float, burst: float, now: float) -> tuple[bool, int]:
        # the store's write transaction is BEGIN IMMEDIATE on SQLite; FOR UPDATE locks the
        # row on PostgreSQL, so concurrent requests on one key take tokens one at a time
        with self.store.transaction() as tx:
            row = tx.conn.execute(
                select(rate_buckets.c.tokens, rate_buckets.c.updated_epoch_s)
                .where(rate_buckets.c.bucket_key == key)
                .with_for_update()
            ).first()
            if row is None:
                bucket = TokenBucket.full(rate, burst, now)
            else:
                bucket = TokenBucket(rate, burst, min(burst, row.tokens), row.updated_epoch_s)
            bucket, allowed, wait = bucket.take(now)
            values = {"tokens": bucket.tokens, "updated_epoch_s": bucket.updated}
            if row is None:
                tx.conn.execute(insert(rate_buckets), {"bucket_key": key, **values})
            else:
                tx.conn.execute(
                    update(rate_buckets).where(rate_buckets.c.bucket_key == key), values
                )
        return allowed, _retry_after(allowed, wait)
