"""The dashboards' reads of the warehouse (the read-only reader itself is nofx.warehouse).

Every query opens a short-lived read-only connection and closes it at once, so the
pipeline, DuckDB's single writer, is never blocked by a dashboard. With
``NOFX_DBT_TARGET=postgres`` the same queries read the PostgreSQL warehouse (ADR 0026): they
are written in the SQL both accept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from nofx.warehouse import (
    ANALYTICS,
    IDENTIFIER,
    WarehouseBusy,
    WarehouseMissing,
    WarehouseUnavailable,
    load_table,
    mart_schema,
    query,
    table_exists,
    warehouse_path,
)

__all__ = [
    "ANALYTICS",
    "IDENTIFIER",
    "WarehouseBusy",
    "WarehouseMissing",
    "WarehouseUnavailable",
    "load_table",
    "mart_schema",
    "query",
    "table_exists",
    "warehouse_path",
]

SESSION_COLUMNS = (
    "session_id",
    "tenant_id",
    "pattern",
    "capability",
    "status",
    "succeeded",
    "agent_id",
    "agent_name",
    "attempts",
    "failed_attempts",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cost_usd",
    "complexity",
    "requested_at",
    "started_at",
    "ended_at",
    "duration_ms",
    "error_type",
)


# read when the mart has them (ADR 0018): a warehouse built before them still loads
OPTIONAL_SESSION_COLUMNS = ("failure_class", "answer_quality")


def load_sessions(path: Path | None = None) -> pl.DataFrame:
    """The ``agent_sessions`` mart, contract columns (and the optional ones present), oldest
    first."""
    present = query(
        "select column_name from information_schema.columns "
        "where table_schema = ? and table_name = 'agent_sessions'",
        path,
        [mart_schema()],
    )["column_name"].to_list()
    optional = tuple(c for c in OPTIONAL_SESSION_COLUMNS if c in present)
    columns = ", ".join(SESSION_COLUMNS + optional)
    return query(
        f"select {columns} from {mart_schema()}.agent_sessions order by requested_at", path
    )


def load_agent_daily(path: Path | None = None) -> pl.DataFrame | None:
    """The ``agent_performance_daily`` mart, or None while the pipeline has not published it."""
    if not table_exists("agent_performance_daily", path):
        return None
    return query(f"select * from {mart_schema()}.agent_performance_daily order by day", path)


def load_workflow_run(
    session_id: str, path: Path | None = None
) -> tuple[dict[str, Any], pl.DataFrame]:
    """One workflow run: its spec (from the SessionRequested event) and per-step outcomes."""
    spec_rows = query(
        f"select payload from {mart_schema()}.stg_events where stream_id = ? "
        "and event_type = 'SessionRequested'",
        path,
        [f"session-{session_id}"],
    )
    if spec_rows.is_empty():
        raise WarehouseMissing(f"no workflow run {session_id} in the warehouse")
    request = json.loads(spec_rows["payload"][0])["request"]
    steps = query(
        "select replace(step_id, 'wf/', '') as step, count(*) as attempts, "
        "bool_or(succeeded) as succeeded, sum(coalesce(latency_ms, 0)) / 1000.0 as seconds, "
        f"sum(cost_usd) as cost_usd from {mart_schema()}.agent_step_calls "
        "where session_id = ? and step_id like 'wf/%' group by 1 order by 1",
        path,
        [session_id],
    )
    return request.get("workflow") or {}, steps
