"""Token-bucket rate limits per API key: a pure bucket, and two places to keep buckets.

``RateLimiter`` keeps them in the process (fast, but each API process would allow the full
rate). ``SharedRateLimiter`` keeps them in the store, one row per key updated under a row
lock, so every API process and uvicorn worker sharing the database enforces one limit.

A store write per request would cost more than the request itself, so a process leases
tokens from the shared bucket in small batches (about 50 ms worth of the key's rate, at most
100) and spends them locally. When what it holds falls to half a lease, the next lease is
queued in the store's writer in the background, so a steady key never waits on the store
(issue 12: every request of a busy key waited on a durable commit, twice: key and tenant).
A lease lapses a second after it arrived; tokens it did not spend are lost, never handed out
twice. Leasing can only make the limit stricter: every allowed request took a token from the
shared bucket, and a process never holds more than one and a half leases, so over any
window a key is allowed at most burst + rate x window + what the processes hold. While the
bucket is known to be empty (the last take said when the next token is back), refusals are
answered locally too. A key of 10 requests/s leases one at a time, exact, as before.
Times are wall-clock seconds (``time.time()``): monotonic clocks differ between processes.
"""

from __future__ import annotations

import concurrent.futures
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from nofx.store import EventStore, Transaction
from nofx.store.schema import rate_buckets
from nofx.store.writer import Call


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
        # a clock behind the last update (another process measured ``now`` later) refills
        # nothing and keeps the later time: the same seconds never refill twice
        updated = max(now, self.updated)
        if granted >= 1:
            return TokenBucket(self.rate, self.burst, tokens - granted, updated), granted, 0.0
        return TokenBucket(self.rate, self.burst, tokens, updated), 0, (1.0 - tokens) / self.rate

    def take(self, now: float) -> tuple[TokenBucket, bool, float]:
        """(new bucket, allowed, seconds until a token is free when refused): one token."""
        bucket, granted, wait = self.take_up_to(now, 1)
        return bucket, granted == 1, wait


class Limiter(Protocol):
    def check(self, key: str, rate: float, burst: float, now: float) -> tuple[bool, int]:
        """(allowed, Retry-After in whole seconds, at least 1 when refused)."""
        ...

    def check_nowait(
        self, key: str, rate: float, burst: float, now: float
    ) -> tuple[bool, int] | None:
        """``check`` when it can answer without waiting on the store; None when it cannot
        (call ``check`` from a thread then)."""
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

    def check_nowait(
        self, key: str, rate: float, burst: float, now: float
    ) -> tuple[bool, int] | None:
        return self.check(key, rate, burst, now)  # in memory: never waits


@dataclass
class _Lease:
    tokens: int
    expires: float


@dataclass
class _KeyState:
    """What this process holds of one shared bucket: leases (oldest first), the refill in
    flight, and until when the bucket is known to be empty."""

    rate: float
    burst: float
    leases: deque[_Lease] = field(default_factory=deque)
    refill: concurrent.futures.Future[tuple[int, float]] | None = None
    empty_until: float = 0.0
    failure: BaseException | None = None  # why the last take failed, for the next waiter

    def spend(self, now: float) -> bool:
        while self.leases and (self.leases[0].tokens < 1 or now >= self.leases[0].expires):
            self.leases.popleft()
        if not self.leases:
            return False
        self.leases[0].tokens -= 1
        return True

    def held(self) -> int:
        return sum(lease.tokens for lease in self.leases)


class SharedRateLimiter:
    """Buckets in the store's ``rate_buckets`` table: one limit for all API processes."""

    def __init__(
        self,
        store: EventStore,
        *,
        lease_s: float = 0.05,
        max_lease: int = 100,
        lease_ttl_s: float = 1.0,
    ) -> None:
        self.store = store
        self.lease_s = lease_s
        self.max_lease = max_lease
        self.lease_ttl_s = lease_ttl_s
        self._keys: dict[str, _KeyState] = {}
        # re-entrant: a take that is already done runs its callback in the caller's thread
        self._lock = threading.RLock()

    def lease_size(self, rate: float, burst: float) -> int:
        return int(max(1, min(self.max_lease, rate * self.lease_s, burst)))

    def check_nowait(
        self, key: str, rate: float, burst: float, now: float
    ) -> tuple[bool, int] | None:
        """The answer from what this process holds: a leased token (the next lease is asked
        for in the background when this one runs low), a refusal while the bucket is known
        to be empty, or None when only the store can answer (the take is queued by then:
        ``check``, from a thread, waits for it)."""
        with self._lock:
            state = self._state(key, rate, burst)
            if state.spend(now):
                self._maybe_prefetch(key, state, now)
                return True, 0
            if now < state.empty_until:
                return False, _retry_after(False, state.empty_until - now)
            if state.refill is None:  # queued now: the caller's thread waits for it in check
                state.refill = concurrent.futures.Future()
                self._refill(key, state, state.refill, now)
        return None

    def check(self, key: str, rate: float, burst: float, now: float) -> tuple[bool, int]:
        """(allowed, Retry-After in whole seconds, at least 1 when refused).

        One lease request per key at a time (single flight): threads that find the lease
        spent wait for the refill in flight instead of each draining a lease from the shared
        bucket (tokens lost, requests refused early)."""
        for _ in range(5):
            answer = self.check_nowait(key, rate, burst, now)
            if answer is not None:
                return answer
            with self._lock:
                refill = self._state(key, rate, burst).refill
            if refill is None:
                with self._lock:
                    state = self._state(key, rate, burst)
                    failure, state.failure = state.failure, None
                if failure is not None:
                    raise failure  # the store failed: an error, not a silent refusal
                continue  # it arrived already: look again
            granted, wait = refill.result()
            if not granted:
                return False, _retry_after(False, wait)
        return False, 1  # pragma: no cover - five leases spent by others before us

    # -- leasing ---------------------------------------------------------------------------
    def _state(self, key: str, rate: float, burst: float) -> _KeyState:
        state = self._keys.get(key)
        if state is None or (state.rate, state.burst) != (rate, burst):
            # a changed limit drops what was leased under the old one (stricter, never looser)
            state = self._keys[key] = _KeyState(rate, burst)
        return state

    def _maybe_prefetch(self, key: str, state: _KeyState, now: float) -> None:
        """Under the lock: ask for the next lease when what is held falls to half a lease,
        so a steady key never waits on the store. The refill starts in the writer's queue;
        nothing here blocks."""
        size = self.lease_size(state.rate, state.burst)
        if size < 2 or state.refill is not None or state.held() * 2 > size:
            return
        refill = state.refill = concurrent.futures.Future()
        # the writer's queue is lock-free: queue it now, the answer lands in a callback
        self._refill(key, state, refill, now)

    def _refill(
        self,
        key: str,
        state: _KeyState,
        refill: concurrent.futures.Future[tuple[int, float]],
        now: float,
    ) -> None:
        """Take a lease from the shared bucket; ``refill`` resolves once its tokens are
        committed and held here (never before: a token spent before its take commits could
        be a token the bucket never gave)."""
        started = time.monotonic()
        want = self.lease_size(state.rate, state.burst)

        def failed(exc: BaseException) -> None:
            with self._lock:
                state.refill, state.failure = None, exc
            refill.set_exception(exc)

        def arrived(taken: concurrent.futures.Future[tuple[int, float]]) -> None:
            try:
                granted, wait = taken.result()
            except BaseException as exc:  # the store failed: nobody may spend; say so
                failed(exc)
                return
            with self._lock:
                if granted:
                    # the lease runs from when its tokens arrived (the writer's commit may
                    # take a while under load); tokens that lapse unspent are lost, never
                    # handed out twice
                    expires = now + (time.monotonic() - started) + self.lease_ttl_s
                    state.leases.append(_Lease(granted, expires))
                else:
                    state.empty_until = max(state.empty_until, now + wait)
                state.refill, state.failure = None, None
            refill.set_result((granted, wait))

        try:
            taken = self._take_async(key, state.rate, state.burst, now, want)
        except BaseException as exc:  # e.g. the store is closed
            failed(exc)
            return
        taken.add_done_callback(arrived)

    def _take_async(
        self, key: str, rate: float, burst: float, now: float, want: int
    ) -> concurrent.futures.Future[tuple[int, float]]:
        """Queue the take in the store's writer; the future resolves after its commit."""
        future: concurrent.futures.Future[tuple[int, float]] = concurrent.futures.Future()

        def tries(remaining: int) -> None:
            op = self.store.submit(Call(lambda tx: _take_in(tx, key, rate, burst, now, want)))

            def done(result: concurrent.futures.Future[Any]) -> None:
                exc = result.exception()
                if isinstance(exc, IntegrityError) and remaining > 1:
                    tries(remaining - 1)  # two processes created the bucket at once: again
                elif exc is not None:
                    future.set_exception(exc)
                else:
                    future.set_result(result.result())

            op.add_done_callback(done)

        tries(3)
        return future


def _take_in(
    tx: Transaction, key: str, rate: float, burst: float, now: float, want: int
) -> tuple[int, float]:
    """Up to ``want`` tokens from the key's row, in the writer's transaction: BEGIN IMMEDIATE
    on SQLite; FOR UPDATE locks the row on PostgreSQL, so concurrent processes take tokens
    one at a time, and no request thread holds a pooled connection while it waits."""
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
        tx.conn.execute(update(rate_buckets).where(rate_buckets.c.bucket_key == key), values)
    return granted, wait


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
