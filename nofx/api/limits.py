"""The operator's limits and ceilings on what one request, one key and one tenant may cost.

Every number has a default that suits one `nofx up` host and an environment variable that
changes it (``NOFX_API_<NAME>``, e.g. ``NOFX_API_MAX_WORKFLOW_STEPS=1000``); docs/security.md
("Limits and ceilings") lists them with what a client sees when it hits one. They are read
once, when the app is built.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from nofx.errors import NofxError, ValidationError
from nofx.security.inputs import json_depth
from nofx.settings import API_LIMIT_PREFIX, Settings

ENV_PREFIX = API_LIMIT_PREFIX
__all__ = ["ApiLimits", "BudgetExceeded", "QuotaExceeded", "TooBusy", "json_depth"]


@dataclass(frozen=True)
class ApiLimits:
    # one request
    max_body_bytes: int = 1024 * 1024
    max_json_depth: int = 32
    max_workflow_steps: int = 500
    max_workflow_edges: int = 5000
    max_capabilities_per_agent: int = 256
    max_cursor_offset: int = 10_000_000
    analysis_budget_s: float = 1.0
    analysis_workers: int = 1
    analysis_max_waiting: int = 8
    gil_switch_interval_ms: float = 1.0
    # one key
    auth_cache_s: float = 1.0
    sse_streams_per_key: int = 4
    sse_poll_interval_s: float = 0.5
    # one tenant
    tenant_rate_per_s: float = 500.0
    tenant_burst: float = 1000.0
    max_keys_per_tenant: int = 50
    key_mints_per_minute: float = 20.0
    max_agents_per_tenant: int = 1000
    max_sessions_in_flight: int = 500
    max_learn_sessions: int = 10_000  # POST /workflows/learn reads this many recent sessions
    # one client address, before it has a valid key
    auth_failures_burst: float = 20.0
    auth_failures_per_minute: float = 30.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ApiLimits:
        """The limits of the settings ``env`` gives (the process's environment by default)."""
        return cls.from_settings(Settings.from_env(None if env is None else dict(env)))

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiLimits:
        """Defaults, overridden by ``NOFX_API_<FIELD>`` (upper case); a bad value is an error."""
        overrides = settings.api_limit_overrides
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = overrides.get(ENV_PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            kind = int if f.type in ("int", int) else float
            try:
                value = kind(raw)
            except ValueError:
                raise ValueError(
                    f"{ENV_PREFIX}{f.name.upper()}={raw!r} is not a number; "
                    f"unset it for the default ({getattr(cls, f.name)})"
                ) from None
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{ENV_PREFIX}{f.name.upper()} must be a positive number")
            values[f.name] = value
        return cls(**values)


class QuotaExceeded(NofxError):
    """A tenant ceiling set by the operator (agents, keys): free one, or ask for more."""

    code = "quota-exceeded"
    http_status = 409


class TooBusy(NofxError):
    """Refused for now, not for ever: the answer carries Retry-After."""

    code = "too-busy"
    http_status = 429

    def __init__(self, message: str, *, hint: str, retry_after: int = 1) -> None:
        super().__init__(message, hint=hint)
        self.headers = {"Retry-After": str(max(1, retry_after))}


class BudgetExceeded(NofxError):
    """Analysis that did not finish within its time budget (the work was stopped)."""

    code = "analysis-budget-exceeded"
    http_status = 503

    def __init__(self, message: str, *, hint: str, retry_after: int = 2) -> None:
        super().__init__(message, hint=hint)
        self.headers = {"Retry-After": str(retry_after)}


def check_workflow_size(workflow: Any, limits: ApiLimits, where: str = "workflow") -> None:
    """Refuse a workflow whose size alone would make validation or analysis expensive.

    Runs before the workflow model parses it (nofx.workflows), so the cost of refusing is
    proportional to the steps actually sent, and never more than the limits.
    """
    if not isinstance(workflow, dict):
        return  # the model's own validation says what is wrong
    steps = workflow.get("steps")
    if not isinstance(steps, list):
        return
    if len(steps) > limits.max_workflow_steps:
        raise ValidationError(
            f"{where} has {len(steps)} steps; at most {limits.max_workflow_steps} are accepted",
            hint="split it into smaller workflows (the operator sets NOFX_API_MAX_WORKFLOW_STEPS)",
        )
    edges = 0
    for step in steps:
        needs = step.get("needs") if isinstance(step, dict) else None
        if isinstance(needs, list):
            edges += len(needs)
    if edges > limits.max_workflow_edges:
        raise ValidationError(
            f"{where} has {edges} dependencies (needs); at most "
            f"{limits.max_workflow_edges} are accepted",
            hint="drop dependencies implied by others (if c needs b and b needs a, c need not "
            "list a); the operator sets NOFX_API_MAX_WORKFLOW_EDGES",
        )
