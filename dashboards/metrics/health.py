"""What to do: the SLA, counted savings, open alerts, overall health and live accuracy."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

from dashboards.metrics.sessions import Headline

SLA_FAILURE_RATE = 0.01  # the orchestration alert rule's threshold


def sla_status(success_rate: float | None, target_failure_rate: float = SLA_FAILURE_RATE) -> str:
    """'met' or 'breached' against the failure-rate target, or 'no data' before outcomes."""
    if success_rate is None:
        return "no data"
    return "met" if 1 - success_rate <= target_failure_rate + 1e-12 else "breached"


def orchestration_sla(head: Headline, target_failure_rate: float = SLA_FAILURE_RATE) -> str:
    """The seed's target is on orchestration failures (ADR 0018): wrong answers do not breach it."""
    rate = head.orchestration_failure_rate
    return sla_status(None if rate is None else 1 - rate, target_failure_rate)


# -- what an executive reads first ------------------------------------------------------------
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
CAPABILITY_KINDS = ("flaky_step",)  # subject is a capability: the action covers every agent
AGENT_KINDS = ("cheaper_agent",)  # subject is "capability:agent": the action covers one agent


def recommendation_scope(kind: str, subject: str) -> tuple[str | None, str | None]:
    """(capability, agent) a recommendation acts on; (None, None) when it is about neither."""
    if kind in AGENT_KINDS and ":" in subject:
        capability, agent = subject.split(":", 1)
        return capability, agent
    if kind in CAPABILITY_KINDS:
        return subject, None
    return None, None


def counted_savings(recs: pl.DataFrame) -> pl.DataFrame:
    """Each recommendation with the part of its estimated saving that is counted in a total.

    Recommendations overlap: "route code.review from A to B" and "code.review fails 30% of
    attempts" both claim A's failed calls. So, per tenant and capability, one action per
    agent is kept (the largest), and the agent-level actions and the capability-level ones
    are counted as alternatives: whichever set saves more is counted, the other shows 0
    with the reason. The total is therefore a floor of what doing everything would save,
    never a sum of the same dollars twice.
    """
    schema = {
        "capability": pl.Utf8,
        "agent": pl.Utf8,
        "counted_savings_usd": pl.Float64,
        "why": pl.Utf8,
    }
    if recs.is_empty():
        return recs.with_columns(*[pl.lit(None, dtype=t).alias(c) for c, t in schema.items()])
    rows = recs.to_dicts()
    for i, row in enumerate(rows):
        row["_i"] = i
        row["capability"], row["agent"] = recommendation_scope(
            str(row.get("kind") or ""), str(row.get("subject") or "")
        )
        saving = row.get("estimated_savings_usd")
        row["_saving"] = float(saving) if saving is not None and saving > 0 else 0.0
        row["counted_savings_usd"] = row["_saving"]
        row["why"] = "counted" if row["_saving"] > 0 else "no money estimate"
    groups: dict[tuple[Any, str], list[dict[str, Any]]] = {}
    for row in rows:
        if row["capability"] is not None and row["_saving"] > 0:
            groups.setdefault((row.get("tenant_id"), row["capability"]), []).append(row)
    for (_, capability), members in groups.items():
        best_per_agent: dict[str, dict[str, Any]] = {}
        for row in sorted(members, key=lambda r: (-r["_saving"], r["_i"])):
            if row["agent"] is None:
                continue
            kept = best_per_agent.get(row["agent"])
            if kept is None:
                best_per_agent[row["agent"]] = row
            else:
                row["counted_savings_usd"] = 0.0
                row["why"] = f"same agent and capability as: {kept.get('title')}"
        agent_rows = list(best_per_agent.values())
        capability_rows = sorted(
            (r for r in members if r["agent"] is None), key=lambda r: (-r["_saving"], r["_i"])
        )
        for extra in capability_rows[1:]:
            extra["counted_savings_usd"] = 0.0
            extra["why"] = f"same capability as: {capability_rows[0].get('title')}"
        by_agent = sum(r["_saving"] for r in agent_rows)
        by_capability = capability_rows[0]["_saving"] if capability_rows else 0.0
        losers = capability_rows[:1] if by_agent >= by_capability else agent_rows
        for row in losers:
            row["counted_savings_usd"] = 0.0
            row["why"] = (
                f"overlaps with the other {capability} actions (the same calls' money); "
                "counted once, in the larger of the two"
            )
    out = pl.DataFrame(
        [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows],
        schema={**recs.schema, **schema},
    )
    return out.sort(
        ["counted_savings_usd", "estimated_savings_usd"], descending=True, nulls_last=True
    )


def top_actions(counted: pl.DataFrame, n: int = 3) -> pl.DataFrame:
    """The ``n`` actions that save the most counted money (none without a money estimate)."""
    if counted.is_empty():
        return counted
    return counted.filter(pl.col("counted_savings_usd") > 0).head(n)


def alert_sentences(alerts: pl.DataFrame | None, limit: int = 5) -> list[str]:
    """Open alerts in words, the most severe and most recent first."""
    if alerts is None or alerts.is_empty():
        return []
    open_alerts = alerts.filter(pl.col("status") == "open").to_dicts()
    open_alerts.sort(key=lambda a: str(a.get("last_seen_at")), reverse=True)
    open_alerts.sort(key=lambda a: SEVERITY_ORDER.get(str(a.get("severity")), 3))
    out = []
    for alert in open_alerts[:limit]:
        since = alert.get("first_seen_at")
        when = f" since {since:%Y-%m-%d %H:%M} UTC" if isinstance(since, datetime) else ""
        out.append(f"{str(alert.get('severity', '')).upper()}: {alert.get('message')}{when}")
    return out


@dataclass(frozen=True)
class Health:
    verdict: str  # "Healthy", "Needs attention" or "Critical"
    reason: str


def health(head: Headline, alerts: pl.DataFrame | None) -> Health:
    """One word and one sentence: critical alerts first, then the orchestration failure target
    (task failures are reported beside it, they do not breach it: ADR 0018)."""
    open_alerts = (
        alerts.filter(pl.col("status") == "open")
        if alerts is not None and not alerts.is_empty()
        else None
    )
    critical = (
        0 if open_alerts is None else open_alerts.filter(pl.col("severity") == "critical").height
    )
    others = 0 if open_alerts is None else open_alerts.height - critical
    failure = head.orchestration_failure_rate
    failing = (
        ""
        if failure is None or head.task_failure_rate is None
        else f"{failure:.1%} of finished sessions failed for the orchestrator's reasons, "
        f"{head.task_failure_rate:.1%} on the task (wrong answers)"
    )
    if critical:
        return Health("Critical", f"{critical} critical alert(s) open; {failing or 'no outcomes'}")
    if failure is not None and failure > SLA_FAILURE_RATE + 1e-12:
        return Health("Needs attention", f"{failing} (target ≤ {SLA_FAILURE_RATE:.0%})")
    if others:
        return Health("Needs attention", f"{others} alert(s) open; {failing or 'no outcomes'}")
    if failure is None:
        return Health("No data", "no session has finished in this time range")
    return Health("Healthy", f"{failing} (target ≤ {SLA_FAILURE_RATE:.0%}); no open alerts")


def live_accuracy_lines(accuracy: pl.DataFrame) -> pl.DataFrame:
    """One line per model: each day's live balanced accuracy (predictions made before the
    outcome, scored once it is known). Versions live on the same day are pooled, weighted by
    how many predictions each scored; holdout scores are not live and are left out."""
    schema = {
        "model_name": pl.Utf8,
        "day": pl.Date,
        "predictions": pl.Int64,
        "balanced_accuracy": pl.Float64,
        "versions": pl.Utf8,
    }
    live = accuracy.filter((pl.col("source") == "live") & pl.col("balanced_accuracy").is_not_null())
    if live.is_empty():
        return pl.DataFrame(schema=schema)
    if "model_name" not in live.columns:
        live = live.with_columns(pl.lit("model").alias("model_name"))
    weight = pl.col("predictions").fill_null(0).cast(pl.Float64)
    return (
        live.with_columns(pl.col("day").cast(pl.Date))
        .group_by("model_name", "day")
        .agg(
            pl.col("predictions").sum().cast(pl.Int64),
            ((pl.col("balanced_accuracy") * weight).sum() / weight.sum()).alias(
                "balanced_accuracy"
            ),
            pl.col("model_version").cast(pl.Utf8).unique().sort().str.join(", ").alias("versions"),
        )
        .select(list(schema))
        .cast(schema)  # type: ignore[arg-type]
        .sort("model_name", "day")
    )
