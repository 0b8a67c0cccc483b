"""The warehouse seam (ADR 0026): the same helper calls give the same tables and frames on
DuckDB and on PostgreSQL, and settings choose the backend."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from dagster_project.lib.dbt import postgres_profile_env
from dagster_project.lib.resources import WarehouseResource, build_resources
from dagster_project.lib.warehouse import (
    append_new_rows,
    column_schema,
    dialect,
    has_column,
    read_frame,
    replace_table,
    run_ddl,
    table_exists,
)
from nofx import warehouse
from nofx.settings import Settings, read_warehouse_url
from nofx.warehouse import postgres

FRAME = pl.DataFrame(
    {
        "id": [1, 2, 3],
        "name": ["a", None, "c%?"],
        "ok": [True, False, None],
        "score": [0.5, None, 2.25],
        "at": [datetime(2026, 1, 1, 12), None, datetime(2026, 1, 2)],
        "at_utc": [datetime(2026, 1, 1, tzinfo=UTC), None, None],
        "day": [datetime(2026, 1, 1).date(), None, None],
        "small": pl.Series([1, 2, 3], dtype=pl.Int32),
    }
)


def utc(frame: pl.DataFrame) -> pl.DataFrame:
    """DuckDB names the zone after the machine (``Etc/UTC``); the instants are the same."""
    return frame.with_columns(pl.col("at_utc").dt.convert_time_zone("UTC"))


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def conn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "duckdb":
        with duckdb.connect(str(tmp_path / "w.duckdb")) as db:
            yield db
    else:
        url = request.getfixturevalue("pg_url")
        with postgres.connect(url) as pg:
            yield pg


def test_a_replaced_table_reads_back_as_the_frame(conn: Any) -> None:
    replace_table(conn, "analytics.t", FRAME)
    assert table_exists(conn, "analytics.t")
    assert has_column(conn, "analytics", "t", "small")
    assert not has_column(conn, "analytics", "t", "nope")
    assert_frame_equal(utc(read_frame(conn, "select * from analytics.t order by id")), FRAME)
    replace_table(conn, "analytics.t", FRAME.head(1))
    assert read_frame(conn, "select count(*) as n from analytics.t")["n"][0] == 1


def test_parameters_and_percent_signs_pass_through(conn: Any) -> None:
    replace_table(conn, "analytics.t", FRAME)
    found = read_frame(
        conn, "select id from analytics.t where name like '%\\%%' escape '\\' or id = ?", [1]
    )
    assert sorted(found["id"].to_list()) == [1, 3]
    assert read_frame(conn, "select id from analytics.t where name = ?", ["c%?"])["id"][0] == 3


def test_an_empty_result_keeps_its_column_types(conn: Any) -> None:
    replace_table(conn, "analytics.t", FRAME)
    empty = read_frame(conn, "select * from analytics.t where false")
    assert empty.height == 0
    assert utc(empty).schema == FRAME.schema


def test_append_adds_only_new_keys(conn: Any) -> None:
    assert append_new_rows(conn, "analytics.log", FRAME.head(2), key="id") == 2
    assert append_new_rows(conn, "analytics.log", FRAME, key="id") == 1
    assert append_new_rows(conn, "analytics.log", FRAME, key="id") == 0
    assert read_frame(conn, "select id from analytics.log order by id")["id"].to_list() == [1, 2, 3]


def test_ddl_a_missing_table_and_column_types(conn: Any) -> None:
    assert not table_exists(conn, "raw.x")
    run_ddl(conn, "create schema if not exists raw; create table if not exists raw.x (a bigint)")
    assert table_exists(conn, "raw.x")
    assert column_schema(conn, "x", schema="raw") is not None
    assert column_schema(conn, "missing", schema="raw") is None
    assert dialect(conn) in {"duckdb", "postgres"}


@pytest.mark.postgres
def test_a_registered_frame_is_a_table_until_unregistered(pg_url: str) -> None:
    nested = pl.DataFrame({"k": [1], "tags": [["x", "y"]]})
    with postgres.connect(pg_url) as pg:
        pg.register("incoming", nested)
        assert pg.execute("select tags from incoming").fetchone() == ('["x", "y"]',)
        pg.unregister("incoming")
        with pytest.raises(Exception, match="incoming"):
            pg.execute("select * from incoming")
        pg.execute("create table t as select 1 as a")
        inserted = pg.execute("insert into t values (2), (3)")
        assert inserted.fetchall() == [(2,)]  # DML answers with its row count, as in DuckDB
        assert [c for c, _ in pg.sql("select a from t").description] == ["a"]
        assert pg.sql("select a from t order by a").to_arrow_table().num_rows == 3


@pytest.mark.postgres
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(-(2**62), 2**62),
            st.none() | st.text(max_size=12).filter(lambda s: "\x00" not in s),
            st.none() | st.floats(allow_nan=False, allow_infinity=False, width=64),
        ),
        max_size=20,
    )
)
def test_any_frame_round_trips_through_postgres(pg_url: str, rows: list[tuple]) -> None:
    frame = pl.DataFrame(
        rows, schema={"n": pl.Int64, "s": pl.String, "f": pl.Float64}, orient="row"
    )
    with postgres.connect(pg_url) as pg:
        replace_table(pg, "analytics.prop", frame)
        back = read_frame(pg, "select * from analytics.prop")
    assert_frame_equal(back, frame, check_row_order=False)


def test_settings_choose_the_backend_and_derive_the_url() -> None:
    plain = Settings.from_env({"NOFX_HOME": "/tmp/x"})
    assert not plain.warehouse_on_postgres and plain.warehouse_url is None
    derived = read_warehouse_url(
        {
            "NOFX_DBT_TARGET": "postgres",
            "NOFX_DBT_POSTGRES_HOST": "db",
            "NOFX_DBT_POSTGRES_USER": "u",
            "NOFX_DBT_POSTGRES_PASSWORD": "p@ss",
            "NOFX_DBT_POSTGRES_DB": "wh",
        }
    )
    assert derived == "postgresql://u:p%40ss@db:5432/wh"
    profile = postgres_profile_env(derived)
    assert profile["NOFX_DBT_POSTGRES_PASSWORD"] == "p@ss"
    assert profile["NOFX_DBT_POSTGRES_SCHEMA"] == "main"  # marts named alike on both backends
    explicit = Settings.from_env(
        {"NOFX_DBT_TARGET": "postgres", "NOFX_WAREHOUSE_URL": "postgresql://h/w"}
    )
    assert explicit.warehouse_on_postgres and explicit.warehouse_url == "postgresql://h/w"
    with pytest.raises(ValueError, match="NOFX_DBT_TARGET='oracle'"):
        Settings.from_env({"NOFX_DBT_TARGET": "oracle"})
    resource = build_resources(explicit)["warehouse"]
    assert isinstance(resource, WarehouseResource) and resource.on_postgres
    assert postgres.conninfo("postgresql+psycopg://u:p@h:5433/w") == "postgresql://u:p@h:5433/w"


@pytest.mark.postgres
def test_readers_follow_the_settings_to_postgres(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NOFX_HOME", str(tmp_path))
    monkeypatch.setenv("NOFX_DBT_TARGET", "postgres")
    monkeypatch.setenv("NOFX_WAREHOUSE_URL", pg_url)
    assert warehouse.load_table("analytics.t") is None
    assert not warehouse.table_exists("agents")
    with pytest.raises(warehouse.WarehouseMissing, match="no such table"):
        warehouse.query("select * from main.agents")
    resource = WarehouseResource(
        path=str(tmp_path / "unused.duckdb"), target="postgres", url=pg_url
    )
    with resource.connect() as pg:
        replace_table(pg, "main.agents", pl.DataFrame({"agent_id": ["a", "b"], "tenant_id": "t"}))
    assert warehouse.table_exists("agents")
    assert warehouse.query("select count(*) as n from agents")["n"][0] == 2
    found = warehouse.load_table("main.agents", "agent_id", where="agent_id = ?", params=["b"])
    assert found is not None and found["agent_id"].to_list() == ["b"]
    with warehouse.connect() as conn:
        assert dialect(conn) == "postgres"
    assert not (tmp_path / "unused.duckdb").exists()
    # a reader's connection refuses to write, as DuckDB's read_only does: a dashboard, the
    # API or a query cannot change the marts
    for reader in (warehouse.connect(), resource.connect(read_only=True)):
        with reader as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("delete from main.agents")
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        warehouse.query("create table main.sneaked as select 1 as x")
    assert warehouse.query("select count(*) as n from agents")["n"][0] == 2
    monkeypatch.setenv("NOFX_WAREHOUSE_URL", "postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(warehouse.WarehouseUnavailable, match="cannot be reached"):
        warehouse.query("select 1")


def test_duckdb_connect_refuses_a_missing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOFX_HOME", str(tmp_path))
    monkeypatch.delenv("NOFX_DBT_TARGET", raising=False)
    monkeypatch.delenv("NOFX_WAREHOUSE_PATH", raising=False)
    with pytest.raises(warehouse.WarehouseMissing), warehouse.connect():
        pass
    with warehouse.connect(read_only=False) as conn:
        assert dialect(conn) == "duckdb"
