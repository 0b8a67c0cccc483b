"""Shared fixtures: every test gets its own state directory, so nothing leaks between tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from nofx.domain import AgentSpec
from nofx.registry import AgentRegistry
from nofx.runtime import Runtime, RuntimeConfig
from nofx.settings import Settings
from nofx.store import EventStore

pytest_plugins = ["tests.pipeline_fixture"]


@pytest.fixture
def nofx_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "nofx-home"
    monkeypatch.setenv("NOFX_HOME", str(home))
    for var in ("NOFX_DATABASE_URL", "NOFX_WAREHOUSE_PATH", "MLFLOW_TRACKING_URI", "DAGSTER_HOME"):
        monkeypatch.delenv(var, raising=False)
    return home


LOCAL_AGENTS_POLICY = """\
# what the tests' local agents need; production default is deny-all (docs/security.md)
command:
  allowed_executables: [{python}, sleep]
python:
  allowed_modules: [tests]
"""


@pytest.fixture
def local_agents_policy(nofx_home: Path) -> Path:
    """An operator policy.yaml in NOFX_HOME that lets tests run local agents: this Python,
    ``sleep``, and functions defined under the ``tests`` package."""
    import json
    import sys

    nofx_home.mkdir(parents=True, exist_ok=True)
    path = nofx_home / "policy.yaml"
    path.write_text(LOCAL_AGENTS_POLICY.format(python=json.dumps(sys.executable)))
    return path


@pytest.fixture
def settings(nofx_home: Path) -> Settings:
    s = Settings.from_env()
    s.ensure_dirs()
    return s


@pytest.fixture
def store(settings: Settings) -> Iterator[EventStore]:
    s = EventStore(settings.database_url)
    yield s
    s.dispose()


@pytest.fixture
def registry(store: EventStore) -> AgentRegistry:
    return AgentRegistry(store)


def fleet_specs(
    n: int = 6, capabilities: tuple[str, ...] = ("code.generate", "code.review")
) -> list[AgentSpec]:
    """A small simulated fleet: cheaper agents are less skilled, as in real model line-ups."""
    specs = []
    for i in range(n):
        level = 1 + i % 5
        specs.append(
            AgentSpec(
                name=f"sim-{i}",
                capabilities=[{"name": c, "proficiency": level} for c in capabilities],
                pricing={
                    "input_per_1k_tokens": 0.0005 * level,
                    "output_per_1k_tokens": 0.0015 * level,
                },
                provider={"kind": "simulated", "config": {"latency_median_ms": 200 + 100 * level}},
            )
        )
    return specs


@pytest.fixture
def fleet(registry: AgentRegistry) -> list:
    return [registry.register(spec) for spec in fleet_specs()]


@pytest.fixture
def runtime(store: EventStore, registry: AgentRegistry) -> Runtime:
    return Runtime(store, registry, config=RuntimeConfig(time_scale=0.0, seed=11))


def postgres_url() -> str | None:
    return os.environ.get("NOFX_TEST_POSTGRES_URL")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import uuid

    from sqlalchemy import create_engine

    base = postgres_url()
    if not base:
        pytest.skip(
            "NOFX_TEST_POSTGRES_URL is not set (CI sets it; export it to run PostgreSQL tests)"
        )
    name = f"nofx_test_{uuid.uuid4().hex[:12]}"
    admin_url = base.replace("postgresql://", "postgresql+psycopg://", 1)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"PostgreSQL at {base} is not reachable: {exc}")
    yield base.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


# With pytest-xdist (`make test` runs two workers), a session fixture is built once per worker
# that needs it. The two expensive ones (a real pipeline run, a simulated demo week) each
# pin the tests that use them to one worker, so each is built once; the rest is balanced.
# fixture -> the run it needs (dashboard_warehouse asks for the pipeline at run time)
SHARED_RUNS = {"pipeline": "pipeline", "dashboard_warehouse": "pipeline", "demo_home": "demo"}


# A wrapper: the marks go on before xdist's worker hook turns each xdist_group mark into the
# node id's "@group" suffix, and the check after it proves the suffix is there. Both went
# wrong silently once (a conftest hook ran after the worker's; pytest 9.2 ignores the
# suffix), and each worker then built every shared run: twice the CI time.
@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> Iterator[None]:
    for item in items:
        used = getattr(item, "fixturenames", ())
        for fixture, run in SHARED_RUNS.items():
            if fixture in used:
                item.add_marker(pytest.mark.xdist_group(run))
                break
    yield
    if config.getoption("loadgroup", default=False):
        lost = [
            i.nodeid for i in items if i.get_closest_marker("xdist_group") and "@" not in i.nodeid
        ]
        if lost:
            raise pytest.UsageError(
                f"xdist_group marks had no effect on {len(lost)} tests (e.g. {lost[0]}): this "
                "pytest and pytest-xdist pair cannot group; install the pinned versions "
                "(make install, constraints.txt)"
            )
