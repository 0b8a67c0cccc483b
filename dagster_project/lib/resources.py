"""Resources shared by every asset: the event store, the warehouse (DuckDB, or PostgreSQL
when the dbt target is ``postgres``), dbt and MLflow.

All of them read nofx ``Settings`` (``NOFX_HOME`` and friends) when Definitions load,
so Dagster, the CLI and the dashboards agree on where state lives.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from dagster_project.lib.dbt import (
    NofxDbtCli,
    dbt_executable,
    dbt_project,
    postgres_dbt_env,
    warehouse_env,
)
from nofx.settings import Settings
from nofx.store import EventStore
from nofx.warehouse import WarehouseConnection, postgres

FAILURE_MODEL_NAME = "nofx-session-failure"


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
    """The warehouse: the DuckDB file at ``path``, or PostgreSQL at ``url`` when ``target``
    is ``postgres`` (ADR 0026). Connections are short-lived (DuckDB has one writer at a time)
    and both kinds offer the same methods (``execute``, ``sql``, ``register``)."""

    path: str
    target: str = "duckdb"
    url: str = ""

    @property
    def on_postgres(self) -> bool:
        return self.target == "postgres"

    @contextmanager
    def connect(self, *, read_only: bool = False) -> Iterator[WarehouseConnection]:
        if self.on_postgres:
            with postgres.connect(self.url, read_only=read_only) as pg:
                yield pg
            return
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = duckdb.connect(self.path, read_only=read_only)
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def dbt_env(self) -> Iterator[None]:
        """Point dbt's profile at this warehouse while dbt runs (dbt reads the environment)."""
        if self.on_postgres:
            with postgres_dbt_env(self.url):
                yield
            return
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
        "warehouse": WarehouseResource(
            path=str(settings.warehouse_path),
            target=settings.dbt_target,
            url=settings.warehouse_url or "",
        ),
        "dbt": NofxDbtCli(
            project_dir=dbt_project(), target=settings.dbt_target, dbt_executable=dbt_executable()
        ),
        "mlflow": MlflowResource(
            tracking_uri=settings.mlflow_tracking_uri,
            artifact_root=str(settings.mlflow_artifact_root),
        ),
    }
