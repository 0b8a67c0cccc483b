"""API keys with scopes, and rate limits: what the HTTP API enforces."""

from nofx.security.keys import ApiKey, ApiKeyService, IssuedKey, Principal, Scope
from nofx.security.ratelimit import (
    FailureGuard,
    Limiter,
    RateLimiter,
    SharedRateLimiter,
    TokenBucket,
)

__all__ = [
    "ApiKey",
    "ApiKeyService",
    "FailureGuard",
    "IssuedKey",
    "Limiter",
    "Principal",
    "RateLimiter",
    "Scope",
    "SharedRateLimiter",
    "TokenBucket",
]
