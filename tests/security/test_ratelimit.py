"""Token buckets: never more than burst + rate x time, and Retry-After tells the truth."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from nofx.security.ratelimit import RateLimiter, TokenBucket


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


@given(
    rate=st.floats(min_value=1, max_value=5000),
    burst=st.floats(min_value=1, max_value=500),
    workers=st.integers(min_value=1, max_value=4),
    gaps=st.lists(st.floats(min_value=0, max_value=0.2), min_size=1, max_size=150),
)
def test_leased_tokens_never_exceed_the_shared_budget(rate, burst, workers, gaps) -> None:
    """Several processes leasing batches from one bucket allow no more than the bucket."""
    from nofx.security.ratelimit import SharedRateLimiter

    class Bucket:  # the store's row, without a database: the leasing logic is what is tested
        def __init__(self) -> None:
            self.bucket: TokenBucket | None = None

    shared = Bucket()
    limiters = [SharedRateLimiter(None) for _ in range(workers)]  # type: ignore[arg-type]
    for limiter in limiters:

        def take(key, rate, burst, now, want, shared=shared):  # type: ignore[no-untyped-def]
            bucket = shared.bucket or TokenBucket.full(rate, burst, now)
            shared.bucket, granted, wait = bucket.take_up_to(now, want)
            return granted, wait

        limiter._take = take  # type: ignore[method-assign]
    now, allowed = 0.0, 0
    for i, gap in enumerate(gaps):
        now += gap
        ok, retry_after = limiters[i % workers].check("k", rate, burst, now)
        allowed += ok
        assert ok or retry_after >= 1
    assert allowed <= burst + rate * now + 1e-6


def test_a_fast_key_touches_the_store_once_per_lease(store) -> None:  # type: ignore[no-untyped-def]
    from nofx.security import SharedRateLimiter

    limiter = SharedRateLimiter(store)
    writes = []
    original = limiter._take

    def counting(*args):  # type: ignore[no-untyped-def]
        writes.append(args)
        return original(*args)

    limiter._take = counting  # type: ignore[method-assign]
    assert all(limiter.check("fast", rate=10_000, burst=10_000, now=5.0)[0] for _ in range(250))
    assert len(writes) == 3  # 100 tokens per lease
    # a slow key leases one token at a time: exact, as before
    assert limiter.lease_size(10, 10) == 1
    # a lease lapses: later requests take fresh tokens from the shared bucket
    assert limiter.check("fast", rate=10_000, burst=10_000, now=5.1)[0]
    assert len(writes) == 4
