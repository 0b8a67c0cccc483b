"""Warehouse helpers the assets share: read a query into polars, swap or append a whole
frame as a table, run DDL, does a table exist, and the column types shown in the Dagster UI.

The connection is DuckDB's, or ``nofx.warehouse.postgres.PostgresConnection`` which offers
the same ``execute``/``sql``/``register`` surface over PostgreSQL (ADR 0026); the helpers
here are where the two differ. SQL in the assets is written in the dialect both accept
(``double precision``, ``interval '1 day'``, ``percentile_cont ... within group``).

Asset keys are the names of the tables they write (``analytics.alerts`` is the asset
``alerts``); the schema says who writes it: ``raw`` (ingest), ``main`` (dbt), ``analytics``
(the Python assets).
"""

from typing import Any

import dagster as dg
import polars as pl

from nofx.warehouse import WarehouseConnection, postgres

ANALYTICS_SCHEMA = "analytics"
# a DuckDB connection or a PostgresConnection: the same methods (ADR 0026)
Connection = WarehouseConnection


def dialect(conn: Connection) -> str:
    """``postgres`` for the PostgreSQL warehouse, ``duckdb`` for a DuckDB connection."""
    return str(getattr(conn, "dialect", "duckdb"))


def read_frame(conn: Connection, sql: str, params: list[Any] | None = None) -> pl.DataFrame:
    """A query's rows as a polars frame (``?`` parameters on both backends)."""
    return conn.sql(sql, params=params or None).pl()


def run_ddl(conn: Connection, sql: str) -> None:
    """Statements with no result (``create schema``, ``create table if not exists`` ...)."""
    conn.execute(sql).fetchall()


def scalar(conn: Connection, sql: str) -> Any:
    """The first value of a query, with the result fully consumed (DuckDB 2 insists)."""
    rows = conn.execute(sql).fetchall()
    return rows[0][0] if rows else None


def table_exists(conn: Connection, qualified: str) -> bool:
    """Whether ``schema.table`` exists."""
    schema, table = qualified.split(".", 1)
    query = (
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?"
    )
    rows = conn.execute(query, [schema, table]).fetchall()
    return bool(rows and rows[0][0])


def has_column(conn: Connection, schema: str, table: str, column: str) -> bool:
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


def replace_table(conn: Connection, table: str, frame: pl.DataFrame) -> None:
    """Swap a whole table for ``frame`` in one transaction (readers see old or new, not half)."""
    if isinstance(conn, postgres.PostgresConnection):
        postgres.replace_table(conn, table, frame)
        return
    schema = table.split(".", 1)[0]
    conn.execute(f"create schema if not exists {schema}")
    conn.register("replacement", frame)
    try:
        conn.execute("begin transaction")
        conn.execute(f"create or replace table {table} as select * from replacement")
        conn.execute("commit")
    finally:
        conn.unregister("replacement")


def append_new_rows(conn: Connection, table: str, frame: pl.DataFrame, key: str) -> int:
    """Append the rows of ``frame`` whose ``key`` is not in ``table`` yet, creating the table
    with the frame's columns on first use; returns the rows added."""
    schema = table.split(".", 1)[0]
    run_ddl(conn, f"create schema if not exists {schema}")
    conn.register("new_rows", frame)
    try:
        run_ddl(conn, f"create table if not exists {table} as select * from new_rows where false")
        before = scalar(conn, f"select count(*) from {table}")
        run_ddl(
            conn,
            f"insert into {table} select * from new_rows "
            f"where {key} not in (select {key} from {table})",
        )
        after = scalar(conn, f"select count(*) from {table}")
    finally:
        conn.unregister("new_rows")
    return int(after - before)
