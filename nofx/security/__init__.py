"""API keys with scopes, and rate limits: what the HTTP API enforces."""

from nofx.security.keys import ApiKey, ApiKeyService, IssuedKey, Principal, Scope
from nofx.security.ratelimit import RateLimiter, TokenBucket

__all__ = [
    "ApiKey",
    "ApiKeyService",
    "IssuedKey",
    "Principal",
    "RateLimiter",
    "Scope",
    "TokenBucket",
]
