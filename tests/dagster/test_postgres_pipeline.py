"""``NOFX_DBT_TARGET=postgres nofx demo`` end to end on a real PostgreSQL (ADR 0026).

The demo (a small fleet, sessions now, one pipeline run) with the warehouse in a fresh
PostgreSQL database: raw events land in ``raw.raw_events`` there, dbt builds the marts
there, the models and forecasts read the marts from there and write their tables there,
and the readers (``nofx.warehouse``, the dashboards' data layer, the HTTP analytics API)
answer from there. No DuckDB file is created. The demo run is the cost: 263 s on this
project's shared 2-core machine at load 9, where the same demo on DuckDB took 240 s (dbt and
Dagster start-up dominate both).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from typer.testing import CliRunner

from nofx.settings import Settings
from nofx.store import EventStore
from nofx.warehouse import postgres
from tests.conftest import postgres_url

# one demo run for the module: under `make test` (xdist, --dist loadgroup) its tests share
# a worker, so the run is built once
pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.xdist_group("postgres_demo")]
SESSIONS = 60


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new empty database on the server NOFX_TEST_POSTGRES_URL names, dropped afterwards
    (the shared ``pg_url`` fixture, for a module)."""
    base = postgres_url()
    if not base:
        pytest.skip("NOFX_TEST_POSTGRES_URL is not set (CI sets it; export it to run this test)")
    name = f"nofx_pipeline_{uuid.uuid4().hex[:12]}"
    admin = create_engine(
        base.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except Exception as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL at {base} is not reachable: {exc}")
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(scope="module")
def pg_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """NOFX_HOME and the warehouse URL after the demo ran with the postgres target."""
    from nofx.cli import app

    home = tmp_path_factory.mktemp("pg-demo") / "nofx-home"

    with fresh_database() as url:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("NOFX_HOME", str(home))
            env.setenv("NOFX_DBT_TARGET", "postgres")
            env.setenv("NOFX_WAREHOUSE_URL", url)
            for var in ("NOFX_DATABASE_URL", "NOFX_WAREHOUSE_PATH", "MLFLOW_TRACKING_URI"):
                env.delenv(var, raising=False)
            env.delenv("DAGSTER_HOME", raising=False)
            result = CliRunner().invoke(
                app, ["demo", "--sessions", str(SESSIONS), "--days", "0", "--time-scale", "0"]
            )
        assert result.exit_code == 0, result.output
        yield home, url


@pytest.fixture
def pg_env(pg_demo: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    home, url = pg_demo
    monkeypatch.setenv("NOFX_HOME", str(home))
    monkeypatch.setenv("NOFX_DBT_TARGET", "postgres")
    monkeypatch.setenv("NOFX_WAREHOUSE_URL", url)
    for var in ("NOFX_DATABASE_URL", "NOFX_WAREHOUSE_PATH", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    return home, url


def count(url: str, table: str) -> int:
    with postgres.connect(url) as conn:
        return int(conn.execute(f"select count(*) from {table}").fetchall()[0][0])


def test_every_layer_of_the_pipeline_is_in_postgres(pg_env: tuple[Path, str]) -> None:
    home, url = pg_env
    settings = Settings.from_env()
    with postgres.connect(url) as conn:
        landed, distinct, last = conn.execute(
            "select count(*), count(distinct position), max(position) from raw.raw_events"
        ).fetchall()[0]
    store = EventStore(settings.database_url)
    try:  # every event up to the last landed one (the alerts run writes a few after ingest)
        positions = [e.position for e in store.read_all(limit=10**6)]
        assert landed == distinct == len([p for p in positions if p <= last])
        assert landed > SESSIONS
    finally:
        store.dispose()
    assert count(url, "main.agent_sessions") == SESSIONS
    assert count(url, "main.agent_step_calls") > 0
    assert count(url, "main.agent_performance_daily") > 0  # the daily partitioned model
    # the ML group read the marts from PostgreSQL and wrote its tables there
    assert count(url, "analytics.prediction_models") > 0
    assert count(url, "analytics.operational_predictions") == SESSIONS
    assert count(url, "analytics.step_duration_forecasts") > 0
    assert count(url, "analytics.alert_evaluations") > 0
    for table in ("usage_forecasts", "pool_demand_forecasts", "recommendations", "alerts"):
        count(url, f"analytics.{table}")  # published (a week of history fills the forecasts)
    assert not (home / "warehouse.duckdb").exists(), "nothing went to DuckDB"


def test_model_features_are_read_from_the_postgres_marts(pg_env: tuple[Path, str]) -> None:
    from ml.features import FEATURES, load_session_features

    _home, url = pg_env
    features = load_session_features(url, finished_only=False)
    assert features.height == SESSIONS
    assert set(FEATURES) <= set(features.columns)
    assert features["agent_prior_success_rate"].is_between(0, 1).all()


def test_the_summary_nofx_demo_prints_was_read_from_postgres(pg_env: tuple[Path, str]) -> None:
    import json

    home, url = pg_env
    summary = json.loads((home / "demo-summary.json").read_text())
    assert summary["ok"]
    assert summary["raw_events_rows"] == count(url, "raw.raw_events")
    assert summary["agent_sessions"] == SESSIONS
    assert summary["predictions"] == SESSIONS
    assert summary["track_c"]["analytics.step_duration_forecasts"] > 0
    assert all(summary["checks"].values()), summary["checks"]


def test_readers_and_the_analytics_api_answer_from_postgres(pg_env: tuple[Path, str]) -> None:
    from fastapi.testclient import TestClient

    from dashboards import data
    from nofx import warehouse
    from nofx.api.app import create_app

    home, _url = pg_env
    assert data.load_sessions().height == SESSIONS
    assert data.table_exists("agent_step_calls")
    predictions = warehouse.load_table("analytics.operational_predictions", "session_id")
    assert predictions is not None and predictions.height == SESSIONS
    assert warehouse.load_table("analytics.no_such_table") is None
    with TestClient(create_app(Settings.from_env(), auth_required=False)) as client:
        answer = client.get("/api/v1/analytics/predictions", params={"limit": 500})
        assert answer.status_code == 200, answer.text
        items = answer.json()["items"]
        durations = client.get("/api/v1/analytics/forecasts/durations").json()["items"]
    assert {item["session_id"] for item in items} == set(predictions["session_id"])
    assert durations, "duration forecasts are served from PostgreSQL"
    assert not (home / "warehouse.duckdb").exists()
