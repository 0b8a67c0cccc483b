"""DuckDB warehouse helpers the assets share: does a table exist, swap a whole table, and
the column types shown in the Dagster UI.

Asset keys are the names of the tables they write (``analytics.alerts`` is the asset
``alerts``); the schema says who writes it: ``raw`` (ingest), ``main`` (dbt), ``analytics``
(the Python assets).
"""

from typing import Any

import dagster as dg
import duckdb
import polars as pl

ANALYTICS_SCHEMA = "analytics"


def scalar(conn: duckdb.DuckDBPyConnection, sql: str) -> Any:
    """The first value of a query, with the result fully consumed (DuckDB 2 insists)."""
    rows = conn.execute(sql).fetchall()
    return rows[0][0] if rows else None


def table_exists(conn: duckdb.DuckDBPyConnection, qualified: str) -> bool:
    """Whether ``schema.table`` exists."""
    schema, table = qualified.split(".", 1)
    query = (
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?"
    )
    rows = conn.execute(query, [schema, table]).fetchall()
    return bool(rows and rows[0][0])


def has_column(conn: duckdb.DuckDBPyConnection, schema: str, table: str, column: str) -> bool:
    rows = conn.execute(
        "select count(*) from information_schema.columns "
        "where table_schema = ? and table_name = ? and column_name = ?",
        [schema, table, column],
    ).fetchall()
    return bool(rows and rows[0][0])


def column_schema(conn: Any, table: str, schema: str = "main") -> dg.TableSchema | None:
    """A table's columns with their warehouse types (DuckDB's names), for the Dagster UI."""
    rows = conn.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = ? and table_name = ? order by ordinal_position",
        [schema, table],
    ).fetchall()
    if not rows:
        return None
    return dg.TableSchema(columns=[dg.TableColumn(name, str(kind)) for name, kind in rows])


def frame_schema(schema: Any) -> dg.TableSchema:
    """A polars schema as a Dagster column schema (column types in the asset's metadata)."""
    return dg.TableSchema(
        columns=[dg.TableColumn(name, str(dtype)) for name, dtype in dict(schema).items()]
    )


def replace_table(conn: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> None:
    """Swap a whole table for ``frame`` in one transaction (readers see old or new, not half)."""
    schema = table.split(".", 1)[0]
    conn.execute(f"create schema if not exists {schema}")
    conn.register("replacement", frame)
    try:
        conn.execute("begin transaction")
        conn.execute(f"create or replace table {table} as select * from replacement")
        conn.execute("commit")
    finally:
        conn.unregister("replacement")
