"""A workflow run's critical path and its Graphviz picture."""

from __future__ import annotations

from typing import Any

import polars as pl


def critical_path(steps: list[dict[str, Any]], seconds: dict[str, float]) -> list[str]:
    """The chain of steps that decided the run's length, by measured seconds (0 if not run)."""
    by_id = {s["id"]: s for s in steps}
    finish: dict[str, float] = {}
    via: dict[str, str | None] = {}

    def end(step_id: str) -> float:
        if step_id not in finish:
            needs = by_id[step_id].get("needs") or []
            before = max(needs, key=end) if needs else None
            via[step_id] = before
            finish[step_id] = (end(before) if before else 0.0) + seconds.get(step_id, 0.0)
        return finish[step_id]

    if not steps:
        return []
    last: str | None = max(by_id, key=end)
    path = []
    while last is not None:
        path.append(last)
        last = via[last]
    return path[::-1]


def workflow_dot(spec: dict[str, Any], steps: pl.DataFrame) -> str:
    """Graphviz DOT of a workflow run: each step with its capability, attempts and seconds;
    the critical path in red, failed steps filled red, skipped (never run) steps grey."""
    outcome = {row["step"]: row for row in steps.to_dicts()}
    spec_steps = spec.get("steps") or []
    path = set(critical_path(spec_steps, {k: v["seconds"] or 0.0 for k, v in outcome.items()}))
    lines = ["digraph workflow {", "  rankdir=LR;", '  node [shape=box, style="rounded,filled"];']
    for step in spec_steps:
        ran = outcome.get(step["id"])
        if ran is None:
            fill, label = "#eeeeee", "skipped"
        else:
            fill = "#c8e6c9" if ran["succeeded"] else "#ffcdd2"
            label = f"{ran['attempts']} attempt(s), {ran['seconds']:.1f}s"
        colour = "#d62728" if step["id"] in path else "#555555"
        text = f"{step['id']}\\n{step['capability']}\\n{label}"
        lines.append(f'  "{step["id"]}" [label="{text}", fillcolor="{fill}", color="{colour}"];')
        for need in step.get("needs") or []:
            edge = "#d62728" if need in path and step["id"] in path else "#888888"
            lines.append(f'  "{need}" -> "{step["id"]}" [color="{edge}"];')
    lines.append("}")
    return "\n".join(lines)
