"""Warehouse access: read-only, short-lived connections; missing and busy warehouses explained."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import duckdb
import pytest

from dashboards import data
from tests.dashboards.conftest import DashboardWarehouse
from tests.dashboards.writer import writer_holding


def test_a_missing_file_or_table_says_run_make_demo(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    with pytest.raises(data.WarehouseMissing, match="make demo"):
        data.query("select 1", path)
    assert not path.exists(), "a reader must not create the warehouse"
    with duckdb.connect(str(path)) as conn:
        conn.execute("create table main.t as select 1 as x")
    assert data.query("select x from main.t", path)["x"].to_list() == [1]
    with pytest.raises(data.WarehouseMissing, match="no such table"):
        data.load_sessions(path)
    assert data.table_exists("t", path)
    assert not data.table_exists("agent_performance_daily", path)
    assert data.load_agent_daily(path) is None


def test_the_connection_is_read_only_and_released_after_each_query(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("create table main.t as select 1 as x")
    with pytest.raises(duckdb.Error, match="read-only"):
        data.query("insert into main.t values (2)", path)
    # released: a writer can open the file right after a read
    data.query("select * from main.t", path)
    with duckdb.connect(str(path)) as writer:
        assert writer.execute("select count(*) from main.t").fetchone() == (1,)


def test_a_reader_gives_way_to_the_writer_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("create table main.t as select 1 as x")
    with writer_holding(path):
        started = time.monotonic()
        with pytest.raises(data.WarehouseBusy, match="being written by the pipeline"):
            data.query("select * from main.t", path, retries=3, backoff_s=0.05)
        assert time.monotonic() - started < 5, "the reader must not wait long on the writer"
        with pytest.raises(data.WarehouseBusy):
            data.table_exists("t", path)  # busy is not the same as missing
    assert data.query("select x from main.t", path, retries=1)["x"].to_list() == [1]


def test_the_mart_schema_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dashboard_warehouse: DashboardWarehouse
) -> None:
    path = tmp_path / "w.duckdb"
    shutil.copy(dashboard_warehouse.settings.warehouse_path, path)
    with duckdb.connect(str(path)) as conn:
        conn.execute("create schema marts")
        conn.execute("create table marts.agent_sessions as select * from main.agent_sessions")
        expected = conn.execute("select count(*) from main.agent_sessions").fetchone()
    monkeypatch.setenv("NOFX_MART_SCHEMA", "marts")
    sessions = data.load_sessions(path)
    assert (sessions.height,) == expected
    assert tuple(sessions.columns) == data.SESSION_COLUMNS + data.OPTIONAL_SESSION_COLUMNS
    assert data.load_agent_daily(path) is None  # only main has it, if the pipeline built it
    monkeypatch.setenv("NOFX_MART_SCHEMA", "main; drop table x")
    with pytest.raises(data.WarehouseUnavailable, match="plain schema name"):
        data.load_sessions(path)


def test_the_warehouse_path_follows_nofx_home(nofx_home: Path) -> None:
    assert data.warehouse_path() == nofx_home.resolve() / "warehouse.duckdb"
