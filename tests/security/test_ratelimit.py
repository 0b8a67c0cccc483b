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
