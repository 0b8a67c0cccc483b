"""Warehouse reads: short-lived read-only DuckDB connections, cached data, never a held connection.

The pipeline is DuckDB's single writer, and a reader holding the file would keep
it from opening: each query opens, reads and closes at once. A reader that finds
the file locked retries briefly, then says so instead of waiting on the writer.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from nofx.settings import Settings

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
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


class WarehouseUnavailable(Exception):
    """The warehouse cannot be read right now; the message says what to do next."""


class WarehouseMissing(WarehouseUnavailable):
    """The warehouse file or a mart is not there yet: the pipeline has not run."""


class WarehouseBusy(WarehouseUnavailable):
    """The writer holds the file; reading again in a moment will work."""


def warehouse_path() -> Path:
    return Settings.from_env().warehouse_path


def mart_schema() -> str:
    """Schema of the marts, ``NOFX_MART_SCHEMA`` (default ``main``); only a plain identifier."""
    schema = os.environ.get("NOFX_MART_SCHEMA", "main")
    if not IDENTIFIER.match(schema):
        raise WarehouseUnavailable(
            f"NOFX_MART_SCHEMA={schema!r} is not a plain schema name: use letters, digits, _"
        )
    return schema


def query(
    sql: str,
    path: Path | None = None,
    params: list[Any] | None = None,
    *,
    retries: int = 5,
    backoff_s: float = 0.2,
) -> pl.DataFrame:
    """Run one read query on a fresh read-only connection and close it at once."""
    path = path or warehouse_path()
    if not path.exists():
        raise WarehouseMissing(f"no warehouse at {path} yet: run `make demo` first")
    for attempt in range(retries):
        try:
            with duckdb.connect(str(path), read_only=True) as conn:
                arrow = conn.sql(sql, params=params or None).to_arrow_table()
            return pl.DataFrame(pl.from_arrow(arrow))
        except duckdb.CatalogException as exc:
            raise WarehouseMissing(
                f"the warehouse at {path} has no such table yet ({exc}): run `make demo` first"
            ) from exc
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
            if attempt == retries - 1:
                raise WarehouseBusy(
                    f"the warehouse at {path} is being written by the pipeline ({exc}); "
                    "refresh in a moment"
                ) from exc
            time.sleep(backoff_s * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


def table_exists(name: str, path: Path | None = None) -> bool:
    """Whether a mart is published; a busy warehouse is an error, not a missing table."""
    try:
        frame = query(
            "select count(*) as n from information_schema.tables "
            "where table_schema = ? and table_name = ?",
            path,
            [mart_schema(), name],
        )
    except WarehouseMissing:
        return False
    return bool(frame["n"][0])


def load_sessions(path: Path | None = None) -> pl.DataFrame:
    """The ``agent_sessions`` mart, contract columns only, oldest first."""
    columns = ", ".join(SESSION_COLUMNS)
    return query(
        f"select {columns} from {mart_schema()}.agent_sessions order by requested_at", path
    )


def load_agent_daily(path: Path | None = None) -> pl.DataFrame | None:
    """The ``agent_performance_daily`` mart, or None while the pipeline has not published it."""
    if not table_exists("agent_performance_daily", path):
        return None
    return query(f"select * from {mart_schema()}.agent_performance_daily order by day", path)
