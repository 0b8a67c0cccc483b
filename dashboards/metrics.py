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
    # ADR 0018: whose failure it was; the <1% target is on the orchestrator's share
    orchestration_failed: int = 0
    task_failed: int = 0
    answer_quality: float | None = None

    @property
    def orchestration_failure_rate(self) -> float | None:
        return self.orchestration_failed / self.finished if self.finished else None

    @property
    def task_failure_rate(self) -> float | None:
        return self.task_failed / self.finished if self.finished else None


def with_failure_class(sessions: pl.DataFrame) -> pl.DataFrame:
    """``failure_class`` on every failed session; a mart built before the class existed
    counts its failures as the orchestrator's (as dbt staging does for old events)."""
    if "failure_class" in sessions.columns:
        cls = pl.col("failure_class").fill_null("orchestration")
    else:
        cls = pl.lit("orchestration")
    return sessions.with_columns(
        pl.when(pl.col("status") == "failed").then(cls).otherwise(None).alias("failure_class")
    )


def failure_class_counts() -> list[pl.Expr]:
    """Per group: sessions failed by the orchestrator, and by the task (needs with_failure_class)."""
    return [
        (pl.col("failure_class") == "orchestration")
        .sum()
        .cast(pl.Int64)
        .alias("orchestration_failed"),
        (pl.col("failure_class") == "task").sum().cast(pl.Int64).alias("task_failed"),
    ]


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
    classes = with_failure_class(sessions)["failure_class"]
    quality = (
        sessions["answer_quality"].drop_nulls() if "answer_quality" in sessions.columns else None
    )
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
        orchestration_failed=int((classes == "orchestration").sum()),
        task_failed=int((classes == "task").sum()),
        answer_quality=float(quality.mean()) if quality is not None and quality.len() else None,  # type: ignore[arg-type]
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


AGENT_TABLE_SCHEMA = {
    "agent_name": pl.Utf8,
    "sessions": pl.Int64,
    "success_rate": pl.Float64,
    "orchestration_failure_rate": pl.Float64,
    "task_failure_rate": pl.Float64,
    "answer_quality": pl.Float64,
    "cost_usd": pl.Float64,
    "avg_cost_usd": pl.Float64,
    "p95_duration_ms": pl.Float64,
}


def agent_table(sessions: pl.DataFrame) -> pl.DataFrame:
    """Per agent: sessions, success rate over finished ones, the orchestrator's and the task's
    failure rates (ADR 0018), answer quality, cost, p95 duration."""
    if sessions.height == 0:
        return pl.DataFrame(schema=AGENT_TABLE_SCHEMA)
    if "answer_quality" not in sessions.columns:
        sessions = sessions.with_columns(pl.lit(None, pl.Float64).alias("answer_quality"))
    finished = pl.when(pl.col("finished") > 0)
    return (
        with_failure_class(sessions)
        .filter(pl.col("agent_name").is_not_null())
        .group_by("agent_name")
        .agg(
            *outcome_counts(),
            *failure_class_counts(),
            pl.col("answer_quality").mean().alias("answer_quality"),
            pl.col("cost_usd").sum().alias("cost_usd"),
            pl.col("duration_ms").quantile(0.95, "nearest").alias("p95_duration_ms"),
        )
        .with_columns(
            success_rate_of_finished(),
            finished.then(pl.col("orchestration_failed") / pl.col("finished"))
            .otherwise(None)
            .alias("orchestration_failure_rate"),
            finished.then(pl.col("task_failed") / pl.col("finished"))
            .otherwise(None)
            .alias("task_failure_rate"),
            (pl.col("cost_usd") / pl.col("sessions")).alias("avg_cost_usd"),
        )
        .select(list(AGENT_TABLE_SCHEMA))
        .cast(AGENT_TABLE_SCHEMA)  # type: ignore[arg-type]
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


BUCKETS = (
    ("minute", timedelta(minutes=1)),
    ("5 minutes", timedelta(minutes=5)),
    ("15 minutes", timedelta(minutes=15)),
    ("hour", timedelta(hours=1)),
    ("6 hours", timedelta(hours=6)),
    ("day", timedelta(days=1)),
)


def bucket_for(span: timedelta, most: int = 60) -> tuple[str, timedelta]:
    """The finest bucket that splits ``span`` into at most ``most`` bars: one day of data is
    24 hourly bars and a five-minute demo is five one-minute bars, never one clipped bar."""
    for name, width in BUCKETS:
        if span <= width * most:
            return name, width
    return BUCKETS[-1]


def activity(
    sessions: pl.DataFrame, since: datetime | None, now: datetime
) -> tuple[pl.DataFrame, str, tuple[datetime, datetime] | None]:
    """Sessions and cost per time bucket and outcome, for the stacked charts.

    The range is the time filter's (``since`` to ``now``) or, for all time, the sessions'
    own; returns the frame, the bucket's name and the range (naive UTC) for the x axis."""
    schema = {
        "bucket": pl.Datetime("us"),
        "bucket_end": pl.Datetime("us"),
        "outcome": pl.Utf8,
        "sessions": pl.Int64,
        "cost_usd": pl.Float64,
    }
    if sessions.is_empty():
        return pl.DataFrame(schema=schema), "hour", None
    dtype = sessions["requested_at"].dtype
    first = cast(datetime, sessions["requested_at"].min())
    last = cast(datetime, sessions["requested_at"].max())
    start = in_column_zone(since, dtype) if since else first
    end = max(in_column_zone(now, dtype), last) if since else last
    name, width = bucket_for(end - start)
    every = f"{int(width.total_seconds())}s"
    outcome = pl.when(pl.col("status").is_in(OPEN)).then(pl.lit("open")).otherwise(pl.col("status"))
    frame = (
        sessions.with_columns(
            pl.col("requested_at").dt.truncate(every).cast(pl.Datetime("us")).alias("bucket"),
            outcome.alias("outcome"),
        )
        .group_by("bucket", "outcome")
        .agg(
            pl.len().cast(pl.Int64).alias("sessions"),
            pl.col("cost_usd").fill_null(0).sum().cast(pl.Float64).alias("cost_usd"),
        )
        .with_columns((pl.col("bucket") + width).alias("bucket_end"))
        .sort("bucket", "outcome")
    )
    span = (
        start.replace(tzinfo=None) if start.tzinfo is None else start,
        (end + width).replace(tzinfo=None) if end.tzinfo is None else end + width,
    )
    return frame.select(list(schema)).cast(schema), name, span  # type: ignore[arg-type]


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
