"""Reading the warehouse from a server: short-lived connections, never held.

The warehouse is the DuckDB file by default, or PostgreSQL when ``NOFX_DBT_TARGET=postgres``
(``Settings.warehouse_url``; ADR 0026): ``connect`` opens either behind the same connection
surface (``nofx.warehouse.postgres``), and ``query`` reads either into polars.

On DuckDB the pipeline is the single writer, and a reader holding the file would keep it
from opening: each query opens, reads and closes at once. A reader that finds the file
locked retries briefly, then says so (``WarehouseBusy``) instead of waiting on the writer.
PostgreSQL readers never wait on the writer (a table is swapped in one transaction). Used
by the HTTP API's analytics endpoints and by the dashboards.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import duckdb
import polars as pl
import psycopg

from nofx.errors import NofxError
from nofx.settings import Settings
from nofx.warehouse import postgres

ANALYTICS = "analytics"  # where the Dagster ML and operations assets publish
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class WarehouseConnection(Protocol):
    """What the pipeline and the readers call on a warehouse connection: DuckDB's own
    connection, or ``postgres.PostgresConnection`` (ADR 0026). Results have ``fetchall()``
    (``execute``) and ``.pl()`` (``sql``); ``register`` makes a polars frame a table."""

    def execute(self, query: str, parameters: Any = None) -> Any: ...

    def sql(self, query: str, *, params: Any = None) -> Any: ...

    def register(self, name: str, frame: Any) -> Any: ...

    def unregister(self, name: str) -> Any: ...


class WarehouseUnavailable(NofxError):
    """The warehouse cannot be read right now; the message says what to do next."""

    code = "warehouse-unavailable"
    http_status = 503


class WarehouseMissing(WarehouseUnavailable):
    """The warehouse file or a mart is not there yet: the pipeline has not run."""

    code = "warehouse-missing"


class WarehouseBusy(WarehouseUnavailable):
    """The writer holds the file; reading again in a moment will work."""


def warehouse_path() -> Path:
    return Settings.from_env().warehouse_path


def mart_schema() -> str:
    """Schema of the marts, ``NOFX_MART_SCHEMA`` (default ``main``); only a plain identifier."""
    schema = Settings.from_env().mart_schema
    if not IDENTIFIER.match(schema):
        raise WarehouseUnavailable(
            f"NOFX_MART_SCHEMA={schema!r} is not a plain schema name: use letters, digits, _"
        )
    return schema


def postgres_url(settings: Settings | None = None) -> str | None:
    """The PostgreSQL warehouse's URL when the settings put the warehouse there, else None."""
    settings = settings or Settings.from_env()
    if not settings.warehouse_on_postgres:
        return None
    if not settings.warehouse_url:  # pragma: no cover - from_env always derives one
        raise WarehouseUnavailable("NOFX_DBT_TARGET=postgres needs NOFX_WAREHOUSE_URL")
    return settings.warehouse_url


@contextmanager
def connect(
    settings: Settings | None = None, *, read_only: bool = True
) -> Iterator[WarehouseConnection]:
    """A short-lived connection to the warehouse the settings name: a DuckDB connection to
    the file, or a ``PostgresConnection`` with the same methods (``execute``, ``sql``)."""
    settings = settings or Settings.from_env()
    url = postgres_url(settings)
    if url is not None:
        with postgres.connect(url, schema=mart_schema(), read_only=read_only) as conn:
            yield conn
        return
    if read_only and not settings.warehouse_path.exists():
        raise WarehouseMissing(f"no warehouse at {settings.warehouse_path} yet: run `make demo`")
    with duckdb.connect(str(settings.warehouse_path), read_only=read_only) as conn:
        yield conn


def _query_postgres(url: str, sql: str, params: list[Any] | None) -> pl.DataFrame:
    try:
        with postgres.connect(url, schema=mart_schema(), read_only=True) as conn:
            return conn.sql(sql, params=params).pl()
    except psycopg.errors.UndefinedTable as exc:
        raise WarehouseMissing(
            f"the PostgreSQL warehouse has no such table yet ({exc}): run `make demo` first"
        ) from exc
    except psycopg.OperationalError as exc:
        raise WarehouseUnavailable(
            f"the PostgreSQL warehouse cannot be reached ({exc}); is it running?"
        ) from exc


def query(
    sql: str,
    path: Path | None = None,
    params: list[Any] | None = None,
    *,
    retries: int = 5,
    backoff_s: float = 0.2,
) -> pl.DataFrame:
    """Run one read query on a fresh read-only connection and close it at once. With no
    ``path``, the warehouse the settings name (PostgreSQL when the target says so)."""
    if path is None:
        url = postgres_url()
        if url is not None:
            return _query_postgres(url, sql, params)
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
