"""The warehouse the dashboard tests read, built from real sessions of a simulated fleet.

With the pipeline in the tree (``dagster_project.materialize``), it is the shared pipeline run:
sessions through the runtime, then ``dbt build`` into DuckDB. Without it, or with
``NOFX_TEST_DASHBOARD_MART=store``, the sessions are run here and ``agent_sessions`` is built
from the store's projection (tests/dashboards/store_mart.py).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nofx.domain import SessionRequest, Task
from nofx.registry import AgentRegistry
from nofx.runtime import Runtime, RuntimeConfig
from nofx.settings import Settings
from nofx.store import EventStore
from tests.conftest import fleet_specs
from tests.dashboards.store_mart import build_agent_sessions_from_store


@pytest.fixture(autouse=True)
def keep_the_main_module() -> Iterator[None]:
    """Streamlit's script runner (AppTest) installs the page script as ``__main__`` and leaves
    it there. Worker processes started later in this pytest process (the API's analysis pool
    uses a forkserver) re-run ``__main__`` on start-up, so that script would kill every one of
    them: put pytest's own back after each test."""
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main


@dataclass(frozen=True)
class DashboardWarehouse:
    settings: Settings
    built_by: str  # "dbt" (the real pipeline) or "store" (the documented SQL fallback)


def pipeline_available() -> bool:
    return importlib.util.find_spec("dagster_project.materialize") is not None


def run_fleet_sessions(settings: Settings, finished: int, waiting: int) -> None:
    """Register the simulated fleet, run ``finished`` sessions, leave ``waiting`` requested."""
    store = EventStore(settings.database_url)
    try:
        registry = AgentRegistry(store)
        for spec in fleet_specs():
            registry.register(spec)
        runtime = Runtime(store, registry, config=RuntimeConfig(time_scale=0.0, seed=7))
        capabilities = ("code.generate", "code.review")
        for i in range(finished):
            task = Task(
                prompt=f"task {i}", capability=capabilities[i % 2], complexity=0.3 + i % 7 / 10
            )
            runtime.sessions.submit(SessionRequest(task=task, max_attempts=1 + i % 2))
        asyncio.run(runtime.run_pending())
        for i in range(waiting):
            task = Task(prompt=f"later {i}", capability="code.generate")
            runtime.sessions.submit(SessionRequest(task=task))
    finally:
        store.dispose()


def store_built_home(home: Path, finished: int = 40, waiting: int = 3) -> Settings:
    settings = Settings.from_env({"NOFX_HOME": str(home)})
    settings.ensure_dirs()
    run_fleet_sessions(settings, finished, waiting)
    build_agent_sessions_from_store(settings.database_url, settings.warehouse_path)
    return settings


@pytest.fixture(scope="session")
def dashboard_warehouse(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> DashboardWarehouse:
    if pipeline_available() and os.environ.get("NOFX_TEST_DASHBOARD_MART") != "store":
        return DashboardWarehouse(request.getfixturevalue("pipeline").settings, "dbt")
    home = tmp_path_factory.mktemp("dashboards") / "nofx-home"
    return DashboardWarehouse(store_built_home(home), "store")
