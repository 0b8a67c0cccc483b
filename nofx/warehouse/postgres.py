"""PostgreSQL as the warehouse, behind the part of DuckDB's connection API the pipeline uses.

The assets and readers were written against a DuckDB connection: ``execute(sql, params)``
then ``fetchall()``, ``sql(sql, params=...).pl()`` for a polars frame, ``register(name,
frame)`` to use a frame as a table. ``PostgresConnection`` offers exactly that surface over
psycopg (ADR 0026), so one asset body runs on either backend and the SQL is written once in
the dialect both accept. What differs is here: ``?`` parameters become psycopg's ``%s``, a
registered frame becomes a temporary table filled by COPY, a whole-table swap is drop and
create in one transaction (PostgreSQL's DDL is transactional: readers see old or new), and
result columns get polars types from the PostgreSQL type of the column, so an empty result
keeps its schema as DuckDB's does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import polars as pl
import psycopg
from psycopg.types.numeric import FloatLoader
from sqlalchemy.engine import make_url

# PostgreSQL type oids -> the polars type DuckDB would have given the same column
POLARS_TYPES: dict[int, pl.DataType] = {
    16: pl.Boolean(),
    20: pl.Int64(),
    21: pl.Int16(),
    23: pl.Int32(),
    700: pl.Float32(),
    701: pl.Float64(),
    1700: pl.Float64(),  # numeric (avg, sum of integers): read as float, as DuckDB's double
    19: pl.String(),
    25: pl.String(),
    1042: pl.String(),
    1043: pl.String(),
    1082: pl.Date(),
    1114: pl.Datetime("us"),
    1184: pl.Datetime("us", "UTC"),
    1186: pl.Duration("us"),
}


def conninfo(url: str) -> str:
    """A libpq connection string from a SQLAlchemy URL (``postgresql+psycopg://...`` too)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def column_type(dtype: pl.DataType) -> str:
    """The PostgreSQL column type for a polars column (what ``create table as`` gives in DuckDB)."""
    if isinstance(dtype, pl.Datetime):
        return "timestamptz" if dtype.time_zone else "timestamp"
    if isinstance(dtype, pl.Decimal):
        return "numeric"
    simple = {
        pl.Boolean: "boolean",
        pl.Int8: "smallint",
        pl.Int16: "smallint",
        pl.Int32: "integer",
        pl.Int64: "bigint",
        pl.UInt8: "smallint",
        pl.UInt16: "integer",
        pl.UInt32: "bigint",
        pl.UInt64: "numeric",
        pl.Float32: "real",
        pl.Float64: "double precision",
        pl.Date: "date",
        pl.Time: "time",
        pl.Duration: "interval",
    }
    return simple.get(type(dtype), "text")


def quote(identifier: str) -> str:
    """``schema.table`` or ``column`` as quoted identifiers."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in identifier.split("."))


def placeholders(query: str) -> str:
    """DuckDB's ``?`` parameters as psycopg's ``%s`` (a literal ``%`` doubled)."""
    return query.replace("%", "%%").replace("?", "%s")


def _nested_as_text(frame: pl.DataFrame) -> pl.DataFrame:
    nested = [n for n, t in frame.schema.items() if t.is_nested() or t == pl.Object]
    return frame.with_columns(
        pl.Series(n, [_json(v) for v in frame[n].to_list()], dtype=pl.String) for n in nested
    )


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str)


class Result:
    """One statement's rows, read at once (the statement has finished when this exists)."""

    def __init__(self, cursor: psycopg.Cursor[Any]) -> None:
        if cursor.description is None:  # DML: DuckDB answers with a one-row count
            self.columns, self.oids = ["Count"], [20]
            self.rows: list[tuple[Any, ...]] = [(max(cursor.rowcount, 0),)]
        else:
            self.columns = [d.name for d in cursor.description]
            self.oids = [d.type_code for d in cursor.description]
            self.rows = list(cursor.fetchall())

    @property
    def description(self) -> list[tuple[str, int]]:
        return list(zip(self.columns, self.oids, strict=True))

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.rows

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None

    def pl(self) -> pl.DataFrame:
        columns = list(zip(*self.rows, strict=True)) if self.rows else [()] * len(self.columns)
        return pl.DataFrame(
            [
                pl.Series(name, list(values), dtype=POLARS_TYPES.get(oid), strict=False)
                for name, oid, values in zip(self.columns, self.oids, columns, strict=True)
            ]
        )

    def to_arrow_table(self) -> Any:
        return self.pl().to_arrow()


class PostgresConnection:
    """A psycopg connection (autocommit, UTC, marts schema first on the search path) with the
    DuckDB connection methods the pipeline and the readers call."""

    dialect = "postgres"

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, query: str, parameters: Sequence[Any] | None = None) -> Result:
        with self.conn.cursor() as cursor:
            if parameters:
                cursor.execute(placeholders(query), list(parameters))
            else:
                cursor.execute(query)
            return Result(cursor)

    def sql(self, query: str, *, params: Sequence[Any] | None = None) -> Result:
        return self.execute(query, params)

    def register(self, name: str, frame: pl.DataFrame) -> None:
        """``frame`` as the temporary table ``name`` for the next statements, as DuckDB's
        ``register`` makes it a view."""
        self.execute(f"drop table if exists pg_temp.{quote(name)}")
        self.execute(create_table_sql(name, frame.schema, temporary=True))
        copy_rows(self.conn, name, frame)

    def unregister(self, name: str) -> None:
        self.execute(f"drop table if exists pg_temp.{quote(name)}")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> PostgresConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def create_table_sql(table: str, schema: Any, *, temporary: bool = False) -> str:
    columns = ", ".join(f"{quote(n)} {column_type(t)}" for n, t in dict(schema).items())
    return f"create {'temporary ' if temporary else ''}table {quote(table)} ({columns})"


def copy_rows(conn: psycopg.Connection[Any], table: str, frame: pl.DataFrame) -> None:
    """Every row of ``frame`` into ``table`` with COPY (the frame's columns, in order)."""
    if frame.width == 0 or frame.height == 0:
        return
    frame = _nested_as_text(frame)
    names = ", ".join(quote(n) for n in frame.columns)
    with conn.cursor() as cursor, cursor.copy(f"copy {quote(table)} ({names}) from stdin") as copy:
        rows: Iterable[tuple[Any, ...]] = frame.iter_rows()
        for row in rows:
            copy.write_row(row)


def replace_table(conn: PostgresConnection, table: str, frame: pl.DataFrame) -> None:
    """Swap a whole table for ``frame`` in one transaction (readers see old or new, not half)."""
    schema = table.split(".", 1)[0]
    with conn.conn.transaction():
        conn.execute(f"create schema if not exists {quote(schema)}")
        conn.execute(f"drop table if exists {quote(table)}")
        conn.execute(create_table_sql(table, frame.schema))
        copy_rows(conn.conn, table, frame)


def connect(url: str, *, schema: str = "main", read_only: bool = False) -> PostgresConnection:
    """A connection to the PostgreSQL warehouse at ``url``; unqualified names resolve to the
    marts' ``schema`` first, as they do to DuckDB's ``main``. ``read_only``: every transaction
    of the session is read-only (PostgreSQL refuses a write), as DuckDB's ``read_only=True``
    refuses one, so a reader (dashboards, API, a tenant's metric) cannot change the marts."""
    options = f"-c TimeZone=UTC -c search_path={schema},public"
    if read_only:
        options += " -c default_transaction_read_only=on"
    conn = psycopg.connect(conninfo(url), autocommit=True, options=options)
    conn.adapters.register_loader("numeric", FloatLoader)
    return PostgresConnection(conn)
