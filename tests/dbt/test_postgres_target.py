"""The same dbt models build and pass their tests on PostgreSQL, from a control plane on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
from sqlalchemy import create_engine, text

from dagster_project.lib.warehouse_postgres import land_raw_events
from nofx.fleet import demo_fleet, demo_requests
from nofx.registry import AgentRegistry
from nofx.runtime import Runtime, RuntimeConfig
from nofx.store import EventStore

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
DBT_DIR = Path(__file__).resolve().parents[2] / "dbt"


def test_dbt_build_passes_on_the_postgres_target(pg_url: str, tmp_path: Path) -> None:
    store = EventStore(pg_url)
    registry = AgentRegistry(store)
    for spec in demo_fleet():
        registry.register(spec)
    runtime = Runtime(store, registry, config=RuntimeConfig(time_scale=0.0))
    for request in demo_requests(80, patterns=("solo", "pair", "hierarchical", "swarm", "auto")):
        runtime.sessions.submit(request)
    asyncio.run(runtime.run_pending())
    warehouse = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    landed = land_raw_events(store, pg_url)
    assert landed == store.count_events()
    assert land_raw_events(store, pg_url) == 0, "a second landing copies nothing"

    parts = urlparse(pg_url)
    env = {
        **os.environ,
        "NOFX_DBT_TARGET": "postgres",
        "NOFX_DBT_POSTGRES_HOST": parts.hostname or "127.0.0.1",
        "NOFX_DBT_POSTGRES_PORT": str(parts.port or 5432),
        "NOFX_DBT_POSTGRES_USER": parts.username or "postgres",
        "NOFX_DBT_POSTGRES_PASSWORD": parts.password or "",
        "NOFX_DBT_POSTGRES_DB": parts.path.lstrip("/"),
        "NOFX_DBT_POSTGRES_SCHEMA": "analytics",
    }
    dbt = Path(sys.executable).parent / "dbt"
    result = subprocess.run(
        [
            str(dbt),
            "build",
            "--project-dir",
            str(DBT_DIR),
            "--profiles-dir",
            str(DBT_DIR),
            "--target",
            "postgres",
            "--target-path",
            str(tmp_path / "target"),
            "--log-path",
            str(tmp_path / "logs"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    assert "ERROR=0" in result.stdout
    with warehouse.connect() as conn:
        marts = conn.execute(
            text("select count(*), count(*) filter (where succeeded) from analytics.agent_sessions")
        ).one()
    counts = runtime.sessions.count_by_status()
    assert marts[0] == sum(counts.values())
    assert marts[1] == counts.get("succeeded", 0)
    warehouse.dispose()
    store.dispose()
