"""One exception hierarchy for the core, with messages that say what to do next."""

from __future__ import annotations


class NofxError(Exception):
    """Base class. ``code`` is a stable, URL-safe identifier (used as the problem+json type)."""

    code = "nofx-error"
    http_status = 500

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    @property
    def message(self) -> str:
        """Read from ``args``, so code that rewrites ``args`` (redacting a secret an agent
        echoed) changes what every reader sees."""
        return str(self.args[0]) if self.args else ""

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ValidationError(NofxError):
    code = "validation-error"
    http_status = 422


class NotFoundError(NofxError):
    code = "not-found"
    http_status = 404


class ConflictError(NofxError):
    code = "conflict"
    http_status = 409


class DuplicateAgentError(ConflictError):
    code = "duplicate-agent"


class UnknownCapabilityError(ValidationError):
    code = "unknown-capability"


class NoEligibleAgentError(NofxError):
    code = "no-eligible-agent"
    http_status = 422


class ConcurrencyError(ConflictError):
    """An optimistic-concurrency check failed: the stream moved on since it was read."""

    code = "concurrency-conflict"


class ConfigurationError(NofxError):
    code = "configuration-error"
    http_status = 500
