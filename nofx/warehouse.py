"""Reading the DuckDB warehouse from a server: short-lived read-only connections, never held.

The pipeline is DuckDB's single writer, and a reader holding the file would keep it from
opening: each query opens, reads and closes at once. A reader that finds the file locked
retries briefly, then says so (``WarehouseBusy``) instead of waiting on the writer. Used by
the HTTP API's analytics endpoints and by the dashboards.
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

ANALYTICS = "analytics"  # where the Dagster ML and operations assets publish
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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


def load_table(
    qualified: str,
    order_by: str | None = None,
    path: Path | None = None,
    *,
    where: str | None = None,
    params: list[Any] | None = None,
) -> pl.DataFrame | None:
    """A published table (``schema.name``, schema ``main`` meaning the marts' schema), or None
    while the pipeline has not published it. ``where`` is a fixed clause with ``?`` params."""
    schema, name = qualified.split(".", 1)
    schema = mart_schema() if schema == "main" else schema
    if not (IDENTIFIER.match(schema) and IDENTIFIER.match(name)):
        raise WarehouseUnavailable(f"{qualified!r} is not a plain table name")
    try:
        exists = query(
            "select count(*) as n from information_schema.tables "
            "where table_schema = ? and table_name = ?",
            path,
            [schema, name],
        )
    except WarehouseMissing:
        return None
    if not exists["n"][0]:
        return None
    clause = f" where {where}" if where else ""
    order = f" order by {order_by}" if order_by else ""
    return query(f"select * from {schema}.{name}{clause}{order}", path, params)
