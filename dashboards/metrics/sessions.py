"""What happened: the agent_sessions mart's counts, rates, filters, trends and activity."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import cast

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
    schema: dict[str, pl.DataType | type[pl.DataType]] = {
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
