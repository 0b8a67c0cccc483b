"""The analyses the API runs in worker processes (nofx.api.compute): pure functions of
picklable input, so a worker needs no store and can be killed at any moment."""

from __future__ import annotations

from typing import Any

from nofx.workflows import analyze, parse_workflow
from nofx.workflows.learning import StepStats, forecast
from nofx.workflows.suggest import KINDS, PreferenceModel, suggest


def analyze_job(
    workflow: dict[str, Any],
    known: set[str] | None,
    workers: int,
    stats: list[StepStats] | None,
) -> dict[str, Any]:
    """Critical path, makespan bound and cost; with learned ``stats``, their forecast too."""
    spec = parse_workflow(workflow, known_capabilities=known)
    result = analyze(spec, workers=workers).to_dict()
    result["history"] = forecast(spec, stats) if stats else None
    return result


def suggest_job(
    workflow: dict[str, Any],
    known: set[str] | None,
    stats: list[StepStats] | None,
    model: PreferenceModel,
) -> dict[str, Any]:
    """Suggested changes, best first, ranked by the tenant's past answers."""
    spec = parse_workflow(workflow, known_capabilities=known)
    found = suggest(spec, stats, model)
    return {
        "suggestions": [s.as_dict() for s in found],
        "preferences": {kind: round(model.acceptance(kind), 3) for kind in KINDS},
    }


def warm_up() -> bool:
    """A no-op the pool runs once so the first real call does not pay for the start."""
    return True
