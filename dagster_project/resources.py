"""Resources shared by every asset: the event store, the DuckDB warehouse, dbt and MLflow.

All of them read nofx ``Settings`` (``NOFX_HOME`` and friends) when Definitions load,
so Dagster, the CLI and the dashboards agree on where state lives.
"""

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import dagster as dg
import duckdb
from dagster_dbt import DbtCliResource, DbtProject

from nofx.settings import Settings
from nofx.store import EventStore

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt"
DBT_TARGETS = ("duckdb", "postgres")
FAILURE_MODEL_NAME = "nofx-session-failure"


def dbt_target(env: dict[str, str] | None = None) -> str:
    """The dbt target named by ``NOFX_DBT_TARGET`` (default duckdb); an unknown name is refused."""
    env = dict(os.environ if env is None else env)
    target = env.get("NOFX_DBT_TARGET", "duckdb") or "duckdb"
    if target not in DBT_TARGETS:
        raise ValueError(
            f"NOFX_DBT_TARGET={target!r} is not a target of dbt/profiles.yml; "
            f"use one of {', '.join(DBT_TARGETS)}"
        )
    return target


def dbt_executable() -> str:
    """dbt from this interpreter's environment, so a venv need not be on PATH."""
    beside = Path(sys.executable).parent / "dbt"
    return str(beside) if beside.exists() else "dbt"


def manifest_is_stale(project_dir: Path, manifest: Path) -> bool:
    """True when the manifest is missing or older than any dbt source file (models, macros...)."""
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    sources = [project_dir / "dbt_project.yml", project_dir / "profiles.yml"]
    for folder in ("models", "macros", "tests"):
        sources.extend((project_dir / folder).rglob("*.*"))
    return any(path.stat().st_mtime > built for path in sources if path.is_file())


@contextmanager
def warehouse_env(path: str | Path) -> Iterator[None]:
    """Set NOFX_WAREHOUSE_PATH for a dbt invocation and put the old value back afterwards."""
    previous = os.environ.get("NOFX_WAREHOUSE_PATH")
    os.environ["NOFX_WAREHOUSE_PATH"] = str(path)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("NOFX_WAREHOUSE_PATH", None)
        else:
            os.environ["NOFX_WAREHOUSE_PATH"] = previous


@cache
def dbt_project() -> DbtProject:
    """The dbt project, with its manifest parsed on first use when missing or stale.

    Cached, so Definitions load without dbt work at import time and parse at most once
    per process; a clean clone needs no manual ``dbt parse``.
    """
    project = DbtProject(project_dir=DBT_PROJECT_DIR, target=dbt_target())
    if manifest_is_stale(project.project_dir, project.manifest_path):
        with warehouse_env(Settings.from_env().warehouse_path):
            DbtCliResource(project_dir=project, dbt_executable=dbt_executable()).cli(
                ["parse", "--quiet"], target_path=project.target_path
            ).wait()
    return project


class EventStoreResource(dg.ConfigurableResource):
    """The nofx event store (SQLite by default, PostgreSQL by URL)."""

    database_url: str

    @contextmanager
    def open(self) -> Iterator[EventStore]:
        store = EventStore(self.database_url)
        try:
            yield store
        finally:
            store.dispose()


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse file. One writer at a time: connections are short-lived."""

    path: str

    @contextmanager
    def connect(self, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = duckdb.connect(self.path, read_only=read_only)
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def dbt_env(self) -> Iterator[None]:
        """Point dbt's profile at this warehouse while dbt runs (dbt reads the environment)."""
        with warehouse_env(self.path):
            yield


class MlflowResource(dg.ConfigurableResource):
    """Where models are tracked and registered."""

    tracking_uri: str
    artifact_root: str
    model_name: str = FAILURE_MODEL_NAME


def build_resources(settings: Settings | None = None) -> dict[str, object]:
    """Every resource, configured from nofx Settings (the environment by default)."""
    settings = settings or Settings.from_env()
    return {
        "event_store": EventStoreResource(database_url=settings.database_url),
        "warehouse": WarehouseResource(path=str(settings.warehouse_path)),
        "dbt": DbtCliResource(
            project_dir=dbt_project(), target=dbt_target(), dbt_executable=dbt_executable()
        ),
        "mlflow": MlflowResource(
            tracking_uri=settings.mlflow_tracking_uri,
            artifact_root=str(settings.mlflow_artifact_root),
        ),
    }
