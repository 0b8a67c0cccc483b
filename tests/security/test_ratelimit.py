"""Token buckets: never more than burst + rate x time, and Retry-After tells the truth."""

from __future__ import annotations

import concurrent.futures

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nofx.security.ratelimit import RateLimiter, SharedRateLimiter, TokenBucket


@given(
    rate=st.floats(min_value=0.5, max_value=100),
    burst=st.floats(min_value=1, max_value=50),
    gaps=st.lists(st.floats(min_value=0, max_value=0.5), min_size=1, max_size=200),
)
def test_allowed_requests_never_exceed_burst_plus_refill(rate, burst, gaps) -> None:
    bucket = TokenBucket.full(rate, burst, now=0.0)
    now, allowed = 0.0, 0
    for gap in gaps:
        now += gap
        bucket, ok, wait = bucket.take(now)
        allowed += ok
        assert ok or wait > 0
        assert 0 <= bucket.tokens <= burst
    assert allowed <= burst + rate * now + 1e-6


def test_retry_after_is_when_a_token_is_back() -> None:
    bucket = TokenBucket.full(rate=2, burst=1, now=0)
    bucket, ok, _ = bucket.take(0)
    assert ok
    bucket, ok, wait = bucket.take(0)
    assert not ok and wait == 0.5
    _, ok, _ = bucket.take(0.5)
    assert ok


def test_limiter_keeps_one_bucket_per_key() -> None:
    limiter = RateLimiter()
    assert limiter.check("a", rate=1, burst=2, now=0) == (True, 0)
    assert limiter.check("a", rate=1, burst=2, now=0) == (True, 0)
    assert limiter.check("a", rate=1, burst=2, now=0) == (False, 1)
    assert limiter.check("b", rate=1, burst=2, now=0) == (True, 0)
    assert limiter.check("a", rate=1, burst=2, now=1.0) == (True, 0)


def test_limiters_sharing_a_store_enforce_one_limit(store) -> None:  # type: ignore[no-untyped-def]
    from nofx.security import SharedRateLimiter

    first, second = SharedRateLimiter(store), SharedRateLimiter(store)
    now = 1_000.0
    verdicts = [
        (first if i % 2 else second).check("key-1", rate=2.0, burst=4, now=now) for i in range(6)
    ]
    assert [ok for ok, _ in verdicts] == [True] * 4 + [False] * 2
    assert verdicts[-1][1] == 1  # Retry-After: half a second, rounded up to whole seconds
    # tokens come back with time, for whichever process asks; other keys are separate
    assert first.check("key-1", rate=2.0, burst=4, now=now + 1.0)[0]
    assert second.check("key-2", rate=2.0, burst=4, now=now)[0]


def done(value: tuple[int, float]) -> concurrent.futures.Future[tuple[int, float]]:
    future: concurrent.futures.Future[tuple[int, float]] = concurrent.futures.Future()
    future.set_result(value)
    return future


class SharedBucket:
    """The store's row, without a database: the leasing logic is what is tested."""

    def __init__(self) -> None:
        self.bucket: TokenBucket | None = None
        self.takes = 0

    def take(self, key, rate, burst, now, want):  # type: ignore[no-untyped-def]
        self.takes += 1
        bucket = self.bucket or TokenBucket.full(rate, burst, now)
        self.bucket, granted, wait = bucket.take_up_to(now, want)
        return done((granted, wait))


@given(
    rate=st.floats(min_value=1, max_value=5000),
    burst=st.floats(min_value=1, max_value=500),
    workers=st.integers(min_value=1, max_value=4),
    gaps=st.lists(st.floats(min_value=0, max_value=0.2), min_size=1, max_size=150),
    nowait=st.booleans(),
)
def test_leased_tokens_never_exceed_the_shared_budget(rate, burst, workers, gaps, nowait) -> None:
    """Several processes leasing batches (and the next batch ahead) from one bucket allow no
    more than the bucket, whether they ask from the loop (nowait) or from a thread."""
    shared = SharedBucket()
    limiters = [SharedRateLimiter(None) for _ in range(workers)]  # type: ignore[arg-type]
    for limiter in limiters:
        limiter._take_async = shared.take  # type: ignore[method-assign]
    now, allowed = 0.0, 0
    for i, gap in enumerate(gaps):
        now += gap
        limiter = limiters[i % workers]
        verdict = limiter.check_nowait("k", rate, burst, now) if nowait else None
        ok, retry_after = verdict or limiter.check("k", rate, burst, now)
        allowed += ok
        assert ok or retry_after >= 1
    assert allowed <= burst + rate * now + 1e-6


@given(
    rate=st.floats(min_value=0.5, max_value=100),
    burst=st.floats(min_value=1, max_value=50),
    steps=st.lists(
        st.tuples(st.floats(min_value=0, max_value=0.5), st.floats(min_value=0, max_value=0.3)),
        min_size=1,
        max_size=100,
    ),
)
def test_a_late_clock_refills_nothing_twice(rate, burst, steps) -> None:
    """Processes measure ``now`` before queueing their take, so takes reach the bucket with
    clocks out of order; the bucket still grants no more than burst + rate x elapsed."""
    bucket = TokenBucket.full(rate, burst, now=0.0)
    latest, allowed = 0.0, 0
    for advance, lag in steps:
        latest += advance
        bucket, granted, _ = bucket.take_up_to(max(0.0, latest - lag), 3)
        allowed += granted
        assert bucket.updated == latest or bucket.updated >= max(0.0, latest - lag)
    assert allowed <= burst + rate * latest + 1e-6


def test_a_fast_key_touches_the_store_about_once_per_lease(store) -> None:  # type: ignore[no-untyped-def]
    limiter = SharedRateLimiter(store)
    takes = []
    original = limiter._take_async

    def counting(*args):  # type: ignore[no-untyped-def]
        takes.append(args)
        return original(*args)

    limiter._take_async = counting  # type: ignore[method-assign]
    assert all(limiter.check("fast", rate=10_000, burst=10_000, now=5.0)[0] for _ in range(250))
    assert 3 <= len(takes) <= 4  # 100 tokens per lease; the next one asked for at half
    assert all(want == 100 for *_, want in takes)
    # a slow key leases one token at a time: exact, as before
    assert limiter.lease_size(10, 10) == 1
    # a lease lapses a second after it arrived: later requests take fresh tokens
    before = len(takes)
    assert limiter.check("fast", rate=10_000, burst=10_000, now=6.5)[0]
    assert len(takes) == before + 1


def test_the_next_lease_is_asked_for_without_waiting() -> None:
    """Past half a lease the refill is queued, and requests keep being answered from the
    tokens held while it is in flight: nobody waits on the store."""
    limiter = SharedRateLimiter(None, lease_s=0.05, max_lease=100)  # type: ignore[arg-type]
    pending: list[concurrent.futures.Future[tuple[int, float]]] = []

    def take(key, rate, burst, now, want):  # type: ignore[no-untyped-def]
        pending.append(concurrent.futures.Future())
        return pending[-1]

    limiter._take_async = take  # type: ignore[method-assign]
    assert limiter.check_nowait("k", 2000, 4000, 1.0) is None  # nothing held: ask the store
    pending[0].set_result((100, 0.0))
    verdicts = [limiter.check_nowait("k", 2000, 4000, 1.0) for _ in range(60)]
    assert verdicts == [(True, 0)] * 60
    assert len(pending) == 2  # one refill queued at half a lease, and only one
    assert [limiter.check_nowait("k", 2000, 4000, 1.0) for _ in range(40)] == [(True, 0)] * 40
    assert limiter.check_nowait("k", 2000, 4000, 1.0) is None  # spent, refill still in flight
    pending[1].set_result((100, 0.0))
    assert limiter.check_nowait("k", 2000, 4000, 1.0) == (True, 0)


def test_an_empty_bucket_is_refused_locally_until_a_token_is_back() -> None:
    shared = SharedBucket()
    limiter = SharedRateLimiter(None)  # type: ignore[arg-type]
    limiter._take_async = shared.take  # type: ignore[method-assign]
    assert [limiter.check("k", 2.0, 1, 10.0)[0] for _ in range(2)] == [True, False]
    takes = shared.takes
    assert limiter.check_nowait("k", 2.0, 1, 10.2) == (False, 1)  # back at 10.5
    assert shared.takes == takes  # answered without the store
    assert limiter.check_nowait("k", 2.0, 1, 10.5) is None  # from now on, only the store knows
    assert limiter.check("k", 2.0, 1, 10.5) == (True, 0)


def test_a_failed_take_refuses_nobody_silently_and_is_retried() -> None:
    limiter = SharedRateLimiter(None)  # type: ignore[arg-type]
    calls = []

    def failing(key, rate, burst, now, want):  # type: ignore[no-untyped-def]
        calls.append(now)
        if len(calls) == 1:
            future: concurrent.futures.Future[tuple[int, float]] = concurrent.futures.Future()
            future.set_exception(OSError("database is gone"))
            return future
        return done((want, 0.0))

    limiter._take_async = failing  # type: ignore[method-assign]
    with pytest.raises(OSError):
        limiter.check("k", 10, 10, 1.0)
    assert limiter.check("k", 10, 10, 1.0) == (True, 0)  # the failure left no refill stuck


def test_a_closed_store_is_an_error_not_a_hang(store) -> None:  # type: ignore[no-untyped-def]
    limiter = SharedRateLimiter(store)
    store.writer.close()
    with pytest.raises(RuntimeError, match="disposed"):
        limiter.check("k", 10, 10, 1.0)
