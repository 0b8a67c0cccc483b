"""The overview page run headless by Streamlit's AppTest: empty, busy and filtered states."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.dashboards.conftest import DashboardWarehouse
from tests.dashboards.writer import writer_holding

APP = str(Path(__file__).resolve().parents[2] / "dashboards" / "app.py")


def run_app(home: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("NOFX_HOME", str(home))
    monkeypatch.delenv("NOFX_WAREHOUSE_PATH", raising=False)
    st.cache_data.clear()  # the cache is per process; each test reads its own warehouse
    return AppTest.from_file(APP, default_timeout=30).run()


def shown(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_no_warehouse_yet_says_run_make_demo(tmp_path: Path, monkeypatch) -> None:
    at = run_app(tmp_path, monkeypatch)
    assert not at.exception
    assert "run `make demo` first" in at.info[0].value
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as conn:
        conn.execute("create table main.other as select 1 as x")
    at = run_app(tmp_path, monkeypatch)
    assert not at.exception
    assert "no such table" in at.info[0].value and "make demo" in at.info[0].value


def test_a_busy_warehouse_is_a_warning_not_a_crash(
    tmp_path: Path, monkeypatch, dashboard_warehouse: DashboardWarehouse
) -> None:
    shutil.copy(dashboard_warehouse.settings.warehouse_path, tmp_path / "warehouse.duckdb")
    with writer_holding(tmp_path / "warehouse.duckdb"):
        at = run_app(tmp_path, monkeypatch)
    assert not at.exception
    assert "busy" in at.warning[0].value and "refresh in a moment" in at.warning[0].value
    at.button[0].click().run()  # "Try again", now that the writer is done
    assert not at.warning and shown(at)["Sessions"] != "0"


def test_filters_change_the_numbers_as_a_query_does(
    monkeypatch, dashboard_warehouse: DashboardWarehouse
) -> None:
    settings = dashboard_warehouse.settings
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        per_capability = dict(
            conn.execute(
                "select capability, count(*) from main.agent_sessions group by 1"
            ).fetchall()
        )
    at = run_app(settings.home, monkeypatch)
    assert not at.exception
    assert shown(at)["Sessions"] == f"{sum(per_capability.values()):,}"
    at.sidebar.selectbox(key="w").set_value("7 days").run()  # the sessions ran minutes ago
    assert not at.exception
    assert shown(at)["Sessions"] == f"{sum(per_capability.values()):,}"
    capability, count = sorted(per_capability.items())[0]
    at.sidebar.multiselect(key="capabilities").set_value([capability]).run()
    assert not at.exception
    assert shown(at)["Sessions"] == f"{count:,}"
    assert len(per_capability) > 1 and count < sum(per_capability.values())
