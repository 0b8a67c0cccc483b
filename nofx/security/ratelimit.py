"""Token-bucket rate limits per API key: a pure bucket and a thread-safe registry of buckets."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass


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


class RateLimiter:
    """One bucket per key, kept in this process (each API process enforces its share)."""

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
        return allowed, 0 if allowed else max(1, math.ceil(wait))
