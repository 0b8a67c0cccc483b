"""Warehouse reads: short-lived read-only DuckDB connections, cached data, never a held connection.

The pipeline is DuckDB's single writer; a reader that finds the file locked
retries briefly, then reports it instead of blocking the writer.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import duckdb
import polars as pl

from nofx.settings import Settings


class WarehouseUnavailable(Exception):
    """The warehouse file or table is not there yet, or is locked by the writer."""


def warehouse_path() -> Path:
    return Settings.from_env().warehouse_path


def mart_schema() -> str:
    return os.environ.get("NOFX_MART_SCHEMA", "main")


def query(
    sql: str, path: Path | None = None, params: list | None = None, retries: int = 5
) -> pl.DataFrame:
    """Run one read query on a fresh read-only connection and close it at once."""
    path = path or warehouse_path()
    if not path.exists():
        raise WarehouseUnavailable(f"no warehouse at {path}: run `make demo` first")
    for attempt in range(retries):
        try:
            with duckdb.connect(str(path), read_only=True) as conn:
                return pl.from_arrow(conn.sql(sql, params=params or None).to_arrow_table())  # type: ignore[return-value]
        except duckdb.CatalogException as exc:
            raise WarehouseUnavailable(
                f"the warehouse has no such table yet ({exc}); run `make demo` first"
            ) from exc
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
            if attempt == retries - 1:
                raise WarehouseUnavailable(
                    f"the warehouse is busy (being written): {exc}; retry in a moment"
                ) from exc
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


def table_exists(name: str, path: Path | None = None) -> bool:
    try:
        frame = query(
            "select count(*) as n from information_schema.tables where table_schema = ? and table_name = ?",
            path,
            [mart_schema(), name],
        )
    except WarehouseUnavailable:
        return False
    return bool(frame["n"][0])


SESSION_COLUMNS = (
    "session_id, tenant_id, pattern, capability, status, succeeded, agent_id, agent_name, attempts, "
    "failed_attempts, input_tokens, output_tokens, total_tokens, cost_usd, complexity, requested_at, "
    "started_at, ended_at, duration_ms, error_type"
)


def load_sessions(path: Path | None = None) -> pl.DataFrame:
    return query(
        f"select {SESSION_COLUMNS} from {mart_schema()}.agent_sessions order by requested_at", path
    )


def load_agent_daily(path: Path | None = None) -> pl.DataFrame | None:
    if not table_exists("agent_performance_daily", path):
        return None
    return query(f"select * from {mart_schema()}.agent_performance_daily order by day", path)
