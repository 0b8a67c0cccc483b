"""Token-bucket rate limits per API key: a pure bucket, and two places to keep buckets.

``RateLimiter`` keeps them in the process (fast, but each API process would allow the full
rate). ``SharedRateLimiter`` keeps them in the store, one row per key updated under a row
lock, so every API process and uvicorn worker sharing the database enforces one limit.

A store write per request would cost more than the request itself, so a process leases
tokens from the shared bucket in small batches (about 50 ms worth of the key's rate, at most
100) and spends them locally; a lease lapses after 50 ms, and tokens it did not spend are
lost, never handed out twice. Leasing can only make the limit stricter: every allowed
request took a token from the shared bucket. A key of 10 requests/s leases one at a time.
Times are wall-clock seconds (``time.time()``): monotonic clocks differ between processes.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from nofx.store import EventStore, Transaction
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

    def take_up_to(self, now: float, want: int) -> tuple[TokenBucket, int, float]:
        """(new bucket, tokens granted: up to ``want``, 0 if none; seconds until one is free)."""
        elapsed = max(0.0, now - self.updated)
        tokens = min(self.burst, self.tokens + elapsed * self.rate)
        granted = min(want, math.floor(tokens))
        if granted >= 1:
            return TokenBucket(self.rate, self.burst, tokens - granted, now), granted, 0.0
        return TokenBucket(self.rate, self.burst, tokens, now), 0, (1.0 - tokens) / self.rate

    def take(self, now: float) -> tuple[TokenBucket, bool, float]:
        """(new bucket, allowed, seconds until a token is free when refused): one token."""
        bucket, granted, wait = self.take_up_to(now, 1)
        return bucket, granted == 1, wait


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


@dataclass
class _Lease:
    tokens: int
    expires: float
    rate: float
    burst: float


class SharedRateLimiter:
    """Buckets in the store's ``rate_buckets`` table: one limit for all API processes."""

    def __init__(self, store: EventStore, *, lease_s: float = 0.05, max_lease: int = 100) -> None:
        self.store = store
        self.lease_s = lease_s
        self.max_lease = max_lease
        self._leases: dict[str, _Lease] = {}
        self._flights: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def lease_size(self, rate: float, burst: float) -> int:
        return int(max(1, min(self.max_lease, rate * self.lease_s, burst)))

    def check(self, key: str, rate: float, burst: float, now: float) -> tuple[bool, int]:
        """(allowed, Retry-After in whole seconds, at least 1 when refused).

        One lease request per key at a time (single flight): threads that find the lease
        spent wait for the one refilling it instead of each draining a lease from the shared
        bucket and overwriting the others' (tokens lost, requests refused early)."""
        if self._spend(key, rate, burst, now):
            return True, 0
        with self._lock:
            flight = self._flights.setdefault(key, threading.Lock())
        with flight:
            if self._spend(key, rate, burst, now):
                return True, 0
            started = time.monotonic()
            for _ in range(3):
                try:
                    granted, wait = self._take(key, rate, burst, now, self.lease_size(rate, burst))
                    break
                except IntegrityError:
                    continue  # two processes created the same bucket at once: read it again
            else:  # pragma: no cover
                raise RuntimeError(f"rate bucket {key!r} could not be created")
            if granted:
                # the lease runs from when its tokens arrived (the writer's commit may take a
                # while under load): tokens that lapse unspent are lost, never handed out twice
                expires = now + (time.monotonic() - started) + self.lease_s
                with self._lock:
                    self._leases[key] = _Lease(granted - 1, expires, rate, burst)
        return granted >= 1, _retry_after(granted >= 1, wait)

    def _spend(self, key: str, rate: float, burst: float, now: float) -> bool:
        with self._lock:
            lease = self._leases.get(key)
            if (
                lease is not None
                and lease.tokens >= 1
                and now < lease.expires
                and (lease.rate, lease.burst) == (rate, burst)
            ):
                lease.tokens -= 1
                return True
        return False

    def _take(
        self, key: str, rate: float, burst: float, now: float, want: int
    ) -> tuple[int, float]:
        # runs in the store's writer (one write path): BEGIN IMMEDIATE on SQLite; FOR UPDATE
        # locks the row on PostgreSQL, so concurrent requests on one key take tokens one at a
        # time, and no request thread holds a pooled connection while it waits for the lock
        def take(tx: Transaction) -> tuple[int, float]:
            row = tx.conn.execute(
                select(rate_buckets.c.tokens, rate_buckets.c.updated_epoch_s)
                .where(rate_buckets.c.bucket_key == key)
                .with_for_update()
            ).first()
            if row is None:
                bucket = TokenBucket.full(rate, burst, now)
            else:
                bucket = TokenBucket(rate, burst, min(burst, row.tokens), row.updated_epoch_s)
            bucket, granted, wait = bucket.take_up_to(now, want)
            values = {"tokens": bucket.tokens, "updated_epoch_s": bucket.updated}
            if row is None:
                tx.conn.execute(insert(rate_buckets), {"bucket_key": key, **values})
            else:
                tx.conn.execute(
                    update(rate_buckets).where(rate_buckets.c.bucket_key == key), values
                )
            return granted, wait

        taken: tuple[int, float] = self.store.call(take)
        return taken


class FailureGuard:
    """Failed authentication per client address: a bucket of ``burst`` failures refilled at
    ``per_minute``; with it empty, the address is refused (429) before its key is even looked
    at, so guessing keys costs the guesser time, not the store.

    Kept in the process (each API worker counts on its own: N workers allow N times the
    failures). Addresses with a full bucket are forgotten when the table grows large.
    """

    def __init__(self, burst: float, per_minute: float, *, max_tracked: int = 10_000) -> None:
        self.burst = burst
        self.rate = per_minute / 60.0
        self.max_tracked = max_tracked
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def _current(self, client: str, now: float) -> TokenBucket:
        bucket = self._buckets.get(client) or TokenBucket.full(self.rate, self.burst, now)
        elapsed = max(0.0, now - bucket.updated)
        return TokenBucket(
            self.rate, self.burst, min(self.burst, bucket.tokens + elapsed * self.rate), now
        )

    def blocked_for(self, client: str, now: float) -> int:
        """Whole seconds until ``client`` may try again; 0 when it may now."""
        with self._lock:
            if client not in self._buckets:
                return 0
            bucket = self._current(client, now)
        return 0 if bucket.tokens >= 1 else max(1, math.ceil((1.0 - bucket.tokens) / self.rate))

    def failed(self, client: str, now: float) -> None:
        """Count one failed attempt of ``client``."""
        with self._lock:
            bucket = self._current(client, now)
            self._buckets[client] = TokenBucket(
                self.rate, self.burst, max(0.0, bucket.tokens - 1), now
            )
            if len(self._buckets) > self.max_tracked:
                self._forget_full(now)

    def _forget_full(self, now: float) -> None:
        for client in list(self._buckets):
            if self._current(client, now).tokens >= self.burst:
                del self._buckets[client]
        while len(self._buckets) > self.max_tracked:  # all still failing: drop the oldest
            del self._buckets[next(iter(self._buckets))]
