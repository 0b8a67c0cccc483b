"""The dbt project: where it is, which target, when to re-parse, and what to run.

``dbt_project()`` is cached, so Definitions load without dbt work at import time and parse
at most once per process; a clean clone needs no manual ``dbt parse``.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from dagster_dbt import DbtCliResource, DbtProject
from packaging import version
from sqlalchemy.engine import make_url

from dagster_project.lib.warehouse import column_schema
from nofx.settings import Settings
from nofx.warehouse import mart_schema

if TYPE_CHECKING:
    from dagster_project.lib.resources import WarehouseResource

DBT_PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt"
# models rebuilt one UTC day at a time (time-based facts); everything else is built whole
DAILY_MODELS = ("agent_performance_daily",)


def dbt_target(env: dict[str, str] | None = None) -> str:
    """The dbt target named by ``NOFX_DBT_TARGET`` (default duckdb); an unknown name is refused."""
    return Settings.from_env(env).dbt_target


def dbt_executable() -> str:
    """dbt from this interpreter's environment, so a venv need not be on PATH."""
    beside = Path(sys.executable).parent / "dbt"
    return str(beside) if beside.exists() else "dbt"


@cache
def installed_dbt_version(executable: str) -> version.Version:
    """The version of ``executable``, asked once per process: the dbt beside this interpreter is
    this environment's dbt-core, read from its package metadata; another one is run once."""
    if Path(executable).parent == Path(sys.executable).parent:
        return version.parse(metadata.version("dbt-core"))
    raw = subprocess.check_output([executable, "--version"]).decode()
    found = re.search(r"(\d+\.\d+\.\d+)", raw)
    if found is None:
        raise ValueError(f"could not read dbt's version from `{executable} --version`: {raw}")
    return version.parse(found.group(1))


class NofxDbtCli(DbtCliResource):
    """dagster-dbt's CLI resource without two costs we never use, about 9 s per dbt run here:

    - it ran ``dbt --version`` for every invocation (a cached property, but Dagster builds the
      resource anew for each run); the version is asked once per process instead;
    - it loaded dbt's adapter in this process (profile, project, connection manager) only to
      offer ``fetch_row_counts`` and ``fetch_column_metadata``; the assets read column types
      from the warehouse themselves (``with_column_schemas``), so no adapter is built.
    """

    def __init__(self, project_dir: str | Path | DbtProject, **kwargs: Any) -> None:
        super().__init__(project_dir=project_dir, **kwargs)  # the parent's signature, for mypy

    @property
    def _cli_version(self) -> version.Version:
        return installed_dbt_version(self.dbt_executable)

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> Any:
        return None


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


def postgres_profile_env(url: str) -> dict[str, str]:
    """The ``NOFX_DBT_POSTGRES_*`` variables dbt/profiles.yml reads, from the warehouse URL;
    the models build in the marts' schema (``main``, as on DuckDB) so every reader's SQL
    names them the same on both backends."""
    parsed = make_url(url)
    return {
        "NOFX_DBT_POSTGRES_HOST": parsed.host or "localhost",
        "NOFX_DBT_POSTGRES_PORT": str(parsed.port or 5432),
        "NOFX_DBT_POSTGRES_USER": parsed.username or "",
        "NOFX_DBT_POSTGRES_PASSWORD": parsed.password or "",
        "NOFX_DBT_POSTGRES_DB": parsed.database or "",
        "NOFX_DBT_POSTGRES_SCHEMA": mart_schema(),
    }


@contextmanager
def postgres_dbt_env(url: str) -> Iterator[None]:
    """Set the dbt postgres profile's variables for a dbt invocation, then put them back."""
    values = postgres_profile_env(url)
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def settings_dbt_env(settings: Settings) -> Iterator[None]:
    """dbt's environment for the warehouse the settings name."""
    if settings.warehouse_on_postgres and settings.warehouse_url:
        with postgres_dbt_env(settings.warehouse_url):
            yield
    else:
        with warehouse_env(settings.warehouse_path):
            yield


def target_path(target: str) -> Path:
    """Where dbt writes its manifest for a target: ``target`` for DuckDB, ``target/<name>``
    for another, since the manifest names its adapter (the assets' kinds) and its schemas."""
    return Path("target") if target == "duckdb" else Path("target") / target


@cache
def dbt_project() -> DbtProject:
    """The dbt project, with its manifest parsed on first use when missing or stale."""
    target = dbt_target()
    project = DbtProject(
        project_dir=DBT_PROJECT_DIR, target=target, target_path=target_path(target)
    )
    if manifest_is_stale(project.project_dir, project.manifest_path):
        with settings_dbt_env(Settings.from_env()):
            NofxDbtCli(project_dir=project, dbt_executable=dbt_executable()).cli(
                ["parse", "--quiet"], target_path=project.target_path
            ).wait()
    return project


def dbt_build_args(full_refresh: bool = False) -> list[str]:
    """The dbt command the assets run: build models and their tests together."""
    return ["build", *(["--full-refresh"] if full_refresh else [])]


def daily_vars(start: datetime, end: datetime) -> dict[str, str]:
    """The dbt vars of a run over the days [start, end): naive UTC timestamps."""
    return {
        "min_day": start.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" "),
        "max_day": end.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" "),
    }


def _model_table(event: Any) -> str | None:
    metadata = getattr(event, "metadata", None) or {}
    unique_id = metadata.get("unique_id")
    text = str(getattr(unique_id, "value", unique_id) or "")
    return text.rsplit(".", 1)[-1] if text.startswith("model.") else None


def with_column_schemas(events: Iterable[Any], warehouse: WarehouseResource) -> Iterator[Any]:
    """dbt's events, each model's materialization carrying its columns and their types.

    The warehouse is read once dbt has finished (dbt-duckdb holds the file while it runs);
    events come out then, and a dbt failure is raised after the events it produced."""
    held: list[Any] = []
    failure: Exception | None = None
    try:
        held.extend(events)
    except Exception as exc:  # re-raised below, after what dbt did build
        failure = exc
    schemas: dict[str, dg.TableSchema] = {}
    tables = {t for t in map(_model_table, held) if t}
    if tables:
        try:
            with warehouse.connect(read_only=True) as conn:
                for table in sorted(tables):
                    found = column_schema(conn, table)
                    if found is not None:
                        schemas[table] = found
        except Exception as exc:  # column types are a nicety: never fail a build on them
            logging.getLogger(__name__).warning("column types not read: %s", exc)
    for event in held:
        model = _model_table(event)
        if model in schemas and hasattr(event, "with_metadata"):
            event = event.with_metadata({**event.metadata, "dagster/column_schema": schemas[model]})
        yield event
    if failure is not None:
        raise failure
