"""Pure metric functions on the agent_sessions mart: what the pages show, tested without a browser."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

import polars as pl

FINISHED = ("succeeded", "failed")
OPEN = ("requested", "running")


@dataclass(frozen=True)
class Headline:
    sessions: int
    finished: int
    succeeded: int
    failed: int
    open: int
    success_rate: float | None
    cost_usd: float
    avg_cost_usd: float | None
    tokens: int


def headline(sessions: pl.DataFrame) -> Headline:
    """Success rate counts finished sessions only (succeeded / (succeeded + failed)).

    Open sessions (requested or running) have no outcome yet; cancelled ones were stopped
    by a user, not failed by an agent, so neither moves the rate.
    """
    n = sessions.height
    if n == 0:
        return Headline(0, 0, 0, 0, 0, None, 0.0, None, 0)
    status = sessions["status"]
    succeeded = int((status == "succeeded").sum())
    failed = int((status == "failed").sum())
    finished = succeeded + failed
    cost = float(sessions["cost_usd"].fill_null(0).sum())
    return Headline(
        sessions=n,
        finished=finished,
        succeeded=succeeded,
        failed=failed,
        open=int(status.is_in(OPEN).sum()),
        success_rate=succeeded / finished if finished else None,
        cost_usd=cost,
        avg_cost_usd=cost / n,
        tokens=int(sessions["total_tokens"].fill_null(0).sum()),
    )


def apply_filters(
    sessions: pl.DataFrame,
    *,
    since: datetime | None = None,
    tenants: list[str] | None = None,
    agents: list[str] | None = None,
    capabilities: list[str] | None = None,
) -> pl.DataFrame:
    """The sidebar filters; an empty selection means no filter on that column."""
    out = sessions
    if since is not None:
        out = out.filter(pl.col("requested_at") >= in_column_zone(since, out["requested_at"].dtype))
    if tenants:
        out = out.filter(pl.col("tenant_id").is_in(tenants))
    if agents:
        out = out.filter(pl.col("agent_name").is_in(agents))
    if capabilities:
        out = out.filter(pl.col("capability").is_in(capabilities))
    return out


def in_column_zone(moment: datetime, dtype: pl.DataType) -> datetime:
    """``moment`` comparable with a timestamp column: the warehouse keeps naive UTC timestamps."""
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is None and moment.tzinfo is not None:
        return moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def since_for(window: str, now: datetime) -> datetime | None:
    """Start of a sidebar time window; None means all time."""
    return {
        "24 hours": now - timedelta(days=1),
        "7 days": now - timedelta(days=7),
        "30 days": now - timedelta(days=30),
    }.get(window)


def outcome_counts() -> list[pl.Expr]:
    """Aggregations every grouped view needs: sessions, succeeded, finished."""
    return [
        pl.len().cast(pl.Int64).alias("sessions"),
        (pl.col("status") == "succeeded").sum().alias("ok"),
        pl.col("status").is_in(FINISHED).sum().alias("finished"),
    ]


def success_rate_of_finished() -> pl.Expr:
    """The same rule as ``headline``: succeeded / finished, none when nothing finished."""
    return (
        pl.when(pl.col("finished") > 0)
        .then(pl.col("ok") / pl.col("finished"))
        .otherwise(None)
        .alias("success_rate")
    )


def daily_trend(sessions: pl.DataFrame, days: int = 7) -> pl.DataFrame:
    """Sessions, success rate and cost per calendar day, for the ``days`` days up to the latest.

    Days without sessions are shown as zero sessions (rate none), so a quiet day is visible.
    """
    schema = {
        "day": pl.Date,
        "sessions": pl.Int64,
        "success_rate": pl.Float64,
        "cost_usd": pl.Float64,
    }
    if sessions.height == 0:
        return pl.DataFrame(schema=schema)
    dated = sessions.with_columns(pl.col("requested_at").dt.date().alias("day"))
    last = cast(date, dated["day"].max())
    calendar = pl.DataFrame(
        {"day": pl.date_range(last - timedelta(days=days - 1), last, eager=True)}
    )
    daily = (
        dated.group_by("day")
        .agg(*outcome_counts(), pl.col("cost_usd").sum().alias("cost_usd"))
        .with_columns(success_rate_of_finished())
    )
    return (
        calendar.join(daily, on="day", how="left")
        .with_columns(pl.col("sessions").fill_null(0), pl.col("cost_usd").fill_null(0.0))
        .select(list(schema))
        .cast(schema)  # type: ignore[arg-type]
        .sort("day")
    )


def failure_reasons(sessions: pl.DataFrame, top: int = 10) -> pl.DataFrame:
    """The commonest error types among failed sessions, with their share of the failures."""
    failed = sessions.filter(pl.col("status") == "failed")
    if failed.height == 0:
        return pl.DataFrame(
            schema={"error_type": pl.Utf8, "sessions": pl.Int64, "share": pl.Float64}
        )
    return (
        failed.with_columns(pl.col("error_type").fill_null("unknown"))
        .group_by("error_type")
        .agg(pl.len().cast(pl.Int64).alias("sessions"))
        .with_columns((pl.col("sessions") / failed.height).alias("share"))
        .sort(["sessions", "error_type"], descending=[True, False])
        .head(top)
    )


def agent_table(sessions: pl.DataFrame) -> pl.DataFrame:
    """Per agent: sessions, success rate over finished ones, cost, p95 duration."""
    if sessions.height == 0:
        return pl.DataFrame(
            schema={
                "agent_name": pl.Utf8,
                "sessions": pl.Int64,
                "success_rate": pl.Float64,
                "cost_usd": pl.Float64,
                "avg_cost_usd": pl.Float64,
                "p95_duration_ms": pl.Float64,
            }
        )
    return (
        sessions.filter(pl.col("agent_name").is_not_null())
        .group_by("agent_name")
        .agg(
            *outcome_counts(),
            pl.col("cost_usd").sum().alias("cost_usd"),
            pl.col("duration_ms").quantile(0.95, "nearest").alias("p95_duration_ms"),
        )
        .with_columns(
            success_rate_of_finished(),
            (pl.col("cost_usd") / pl.col("sessions")).alias("avg_cost_usd"),
        )
        .select(
            "agent_name", "sessions", "success_rate", "cost_usd", "avg_cost_usd", "p95_duration_ms"
        )
        .sort("sessions", descending=True)
    )


def fmt_rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def fmt_usd(value: float | None) -> str:
    return "n/a" if value is None else f"${value:,.4f}"


def apply_daily_filters(
    daily: pl.DataFrame,
    *,
    since: datetime | None = None,
    agents: list[str] | None = None,
    capabilities: list[str] | None = None,
) -> pl.DataFrame:
    """The sidebar filters on ``agent_performance_daily``, which has days, not timestamps."""
    out = daily
    if since is not None:
        out = out.filter(pl.col("day").cast(pl.Date) >= since.date())
    if agents:
        out = out.filter(pl.col("agent_name").is_in(agents))
    if capabilities:
        out = out.filter(pl.col("capability").is_in(capabilities))
    return out


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


SLA_FAILURE_RATE = 0.01  # the orchestration alert rule's threshold


def sla_status(success_rate: float | None, target_failure_rate: float = SLA_FAILURE_RATE) -> str:
    """'met' or 'breached' against the failure-rate target, or 'no data' before outcomes."""
    if success_rate is None:
        return "no data"
    return "met" if 1 - success_rate <= target_failure_rate + 1e-12 else "breached"
