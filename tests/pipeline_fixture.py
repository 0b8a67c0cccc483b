"""Real pipeline runs shared by the tests, once per test session.

``pipeline``: real sessions, dbt build on DuckDB, MLflow in tmp, through the command line
entry point (``python -m dagster_project.materialize``), so the runs land in the Dagster
instance at DAGSTER_HOME as they do for ``nofx demo``. Shared by the Dagster, dbt and
dashboard tests.

``demo_home``: what ``make demo`` leaves behind (``nofx demo`` with its own defaults and
fewer sessions): a simulated week, predictions made before their outcomes, the pipeline run
twice. The demo's own test and the ``make up`` browser test read it.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from dagster_project.materialize import main
from nofx.registry import AgentRegistry
from nofx.settings import Settings
from nofx.store import EventStore
from tests.dagster.pipeline_data import register_mixed_fleet, run_waves, run_workflows


@dataclass
class PipelineRun:
    settings: Settings
    summary: dict[str, Any]
    instance: dg.DagsterInstance
    lines: list[str]


def isolated_settings(home: Path) -> Settings:
    settings = Settings.from_env({"NOFX_HOME": str(home)})
    settings.ensure_dirs()
    return settings


def exchange_messages(store: EventStore) -> None:
    """Bus traffic for the agent_communications mart: a session topic and a direct channel,
    one body large enough to be stored as a blob."""
    from nofx.bus import MessageBus
    from nofx.domain import Message

    bus = MessageBus(store)
    agents = [a.agent_id for a in AgentRegistry(store).list()]
    session = store.read_all(limit=1, stream_type="session")[0].stream_id.removeprefix("session-")
    for i in range(3):
        bus.publish(
            Message(sender=agents[i], topic=f"session-{session}", session_id=session, body={"i": i})
        )
    bus.publish(Message(sender=agents[0], recipient=agents[1], body={"diff": "x" * 70_000}))


def count_api_requests(store: EventStore) -> None:
    """API traffic for the api_usage_hourly mart, counted as the API's middleware counts it:
    two keys, three endpoints, some refused."""
    from nofx.api.usage import UsageCounter, record_usage

    counter = UsageCounter()
    calls = [
        ("k_dash", "GET", "/api/v1/analytics/agents", 200),
        ("k_dash", "GET", "/api/v1/alerts", 200),
        ("k_ci", "POST", "/api/v1/orchestration/sessions", 202),
        ("k_ci", "POST", "/api/v1/orchestration/sessions", 429),
    ]
    for n in range(40):
        key, method, route, status = calls[n % len(calls)]
        counter.add("default", key, method, route, status, 5.0 + n)
    record_usage(store, counter.drain())


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """NOFX_HOME after ``nofx demo --sessions 120`` (a week of history, default time scale)."""
    from typer.testing import CliRunner

    from nofx.cli import app

    home = tmp_path_factory.mktemp("demo") / "nofx-home"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("NOFX_HOME", str(home))
        for var in ("NOFX_DATABASE_URL", "NOFX_WAREHOUSE_PATH", "MLFLOW_TRACKING_URI"):
            env.delenv(var, raising=False)
        env.delenv("DAGSTER_HOME", raising=False)
        result = CliRunner().invoke(app, ["demo", "--sessions", "120", "--days", "8"])
    assert result.exit_code == 0, result.output
    return home


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PipelineRun]:
    settings = isolated_settings(tmp_path_factory.mktemp("pipeline") / "nofx-home")
    store = EventStore(settings.database_url)
    registry = AgentRegistry(store)
    register_mixed_fleet(registry)
    run_waves(store, registry, waves=4, per_wave=30)
    run_workflows(store, registry, 6)
    exchange_messages(store)
    count_api_requests(store)
    store.dispose()
    out = settings.home / "summary.json"
    with pytest.MonkeyPatch.context() as env, contextlib.redirect_stdout(io.StringIO()) as said:
        env.setenv("NOFX_HOME", str(settings.home))
        env.setenv("DAGSTER_HOME", str(settings.dagster_home))  # main sets it; restored after
        for var in ("NOFX_DATABASE_URL", "NOFX_WAREHOUSE_PATH", "MLFLOW_TRACKING_URI"):
            env.delenv(var, raising=False)
        exit_code = main(["--json", str(out)])
    summary = json.loads(out.read_text())
    lines = said.getvalue().splitlines()
    assert exit_code == 0, lines
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        yield PipelineRun(settings=settings, summary=summary, instance=instance, lines=lines)
