"""`nofx up` (the API, Dagster, Streamlit, MLflow and a worker) and `nofx where`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from nofx.cli.keys import local_admin_key
from nofx.cli.shared import console, err
from nofx.settings import Settings
from nofx.store import EventStore


def ui_ports() -> dict[str, int]:
    """Ports for `nofx up`; NOFX_<NAME>_PORT overrides each (e.g. NOFX_API_PORT=8080)."""
    return dict(Settings.from_env().ui_ports)


def ui_commands(settings: Settings, python: str = sys.executable) -> dict[str, list[str]]:
    """The four servers `nofx up` starts, all on loopback."""
    bindir = Path(python).parent
    ports = settings.ui_ports
    return {
        "api": [
            python,
            "-m",
            "uvicorn",
            "nofx.api.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(ports["api"]),
            # SIGTERM stops the API within 5 s even with event streams open (issue 10)
            "--timeout-graceful-shutdown",
            "5",
        ],
        "dagster": [
            str(bindir / "dagster"),
            "dev",
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(ports["dagster"]),
        ],
        "streamlit": [
            python,
            "-m",
            "streamlit",
            "run",
            "dashboards/app.py",
            "--server.headless",
            "true",
            "--server.address",
            "127.0.0.1",
            "--server.port",
            str(ports["streamlit"]),
            # no usage statistics (they fail offline) and no "Deploy" menu for executives
            "--browser.gatherUsageStats",
            "false",
            "--client.toolbarMode",
            "minimal",
        ],
        "mlflow": [
            str(bindir / "mlflow"),
            "server",
            "--backend-store-uri",
            settings.mlflow_tracking_uri,
            "--artifacts-destination",
            str(settings.mlflow_artifact_root),
            "--host",
            "127.0.0.1",
            "--port",
            str(ports["mlflow"]),
        ],
    }


LOCAL_DAGSTER_INSTANCE = """\
# Written by `nofx up` for the embedded default (SQLite under NOFX_HOME/dagster).
# One run at a time: the DuckDB warehouse has a single writer, so refreshes queue up.
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 1
# A refresh that meets a dashboard's read lock on the warehouse is tried again.
run_retries:
  enabled: true
  max_retries: 2
"""


def ensure_dagster_instance(dagster_home: Path) -> Path:
    """A dagster.yaml for `nofx up`: telemetry off and one run at a time, unless the operator
    already chose a run coordinator (e.g. deploy/dagster/dagster.yaml on PostgreSQL)."""
    path = dagster_home / "dagster.yaml"
    text = path.read_text() if path.exists() else ""
    if "telemetry:" not in text:
        text += ("" if not text or text.endswith("\n") else "\n") + "telemetry:\n  enabled: false\n"
    if "run_coordinator:" not in text and "run_retries:" not in text:
        text += LOCAL_DAGSTER_INSTANCE
    path.write_text(text)
    return path


def worker_command(time_scale: float, python: str = sys.executable) -> list[str]:
    """The `nofx worker` that `nofx up` runs beside the UIs, so requested sessions run."""
    return [python, "-m", "nofx.cli", "worker", "--time-scale", str(time_scale)]


def up(
    worker_time_scale: Annotated[
        float,
        typer.Option(help="the worker's multiplier on simulated latencies (0 = no sleeping)"),
    ] = 1.0,
    worker: Annotated[
        bool, typer.Option(help="run a `nofx worker` so requested sessions run on their own")
    ] = True,
) -> None:
    """Serve every UI (API, Dagster, Streamlit, MLflow) and run a worker, until Ctrl-C.

    Sessions requested over HTTP are run by the worker; Dagster's new-events sensor then
    refreshes the warehouse, models' accuracy and alerts, and the dashboards show them.
    """
    settings = Settings.from_env()
    settings.ensure_dirs()
    ports = settings.ui_ports
    env = {
        **os.environ,
        "NOFX_HOME": str(settings.home),
        "DAGSTER_HOME": str(settings.dagster_home),
        "NOFX_API_URL": settings.api_url,
    }
    # the store (and its migrations) before anything else opens it
    key_path = local_admin_key(settings, EventStore(settings.database_url))
    ensure_dagster_instance(settings.dagster_home)
    commands = ui_commands(settings)
    if worker:
        commands["worker"] = worker_command(worker_time_scale)
    procs = {
        name: subprocess.Popen(cmd, env=env, start_new_session=True)
        for name, cmd in commands.items()
    }
    table = Table(title="NOFX is up (Ctrl-C to stop)")
    table.add_column("service")
    table.add_column("url")
    for name, port in ports.items():
        table.add_row(name, f"http://127.0.0.1:{port}" + ("/docs" if name == "api" else ""))
    if worker:
        table.add_row("worker", "runs requested sessions (`nofx worker`)")
    console.print(table)
    console.print(
        f"API key (admin, tenant default): in {key_path}; send 'Authorization: Bearer <key>'"
    )

    def _terminate(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    try:
        while all(p.poll() is None for p in procs.values()):
            time.sleep(1)
        dead = [n for n, p in procs.items() if p.poll() is not None]
        err.print(f"[red]{', '.join(dead)} stopped; shutting the rest down[/]")
    except KeyboardInterrupt:
        pass
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def where() -> None:
    """Where state lives (store, warehouse, MLflow, Dagster)."""
    s = Settings.from_env()
    for key, value in (
        ("NOFX_HOME", s.home),
        ("store", s.database_url),
        ("warehouse", s.warehouse_path),
        ("mlflow", s.mlflow_tracking_uri),
        ("DAGSTER_HOME", s.dagster_home),
    ):
        console.print(f"{key:10} {value}")
    if shutil.which("dagster") is None:
        console.print("[yellow]dagster is not on PATH: run `make demo` or activate .venv[/]")
