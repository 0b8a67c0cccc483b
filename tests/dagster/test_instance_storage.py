"""The local Dagster instance's SQLite commits skip fsync; nothing else's does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from dagster_project.lib.dbt import NofxDbtCli, dbt_executable, installed_dbt_version
from dagster_project.lib.instance_storage import _keepers, relax_local_dagster_storage

FULL, NORMAL = 2, 1


def synchronous(path: Path) -> int:
    engine = create_engine(f"sqlite:///{path}", poolclass=NullPool)  # as Dagster opens them
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("pragma synchronous")).scalar_one())
    finally:
        engine.dispose()


def test_only_databases_under_the_dagster_home_are_relaxed(tmp_path: Path) -> None:
    home, elsewhere, sibling = tmp_path / "dagster", tmp_path / "store", tmp_path / "dagster2"
    for folder in (home / "history" / "runs", elsewhere, sibling):
        folder.mkdir(parents=True)
    relax_local_dagster_storage(home)
    run_db = home / "history" / "runs" / "index.db"
    assert synchronous(run_db) == NORMAL
    assert str(run_db.resolve()) in _keepers  # so a write's close is not the last one
    assert synchronous(elsewhere / "nofx.db") == FULL  # nofx's store keeps its own setting
    assert synchronous(sibling / "x.db") == FULL  # a prefix of the path is not enough


def test_the_dbt_version_is_the_executables_own() -> None:
    executable = dbt_executable()
    said = subprocess.check_output([executable, "--version"], text=True)
    assert str(installed_dbt_version(executable)) in said
    assert Path(executable).parent == Path(sys.executable).parent
    resource = NofxDbtCli(
        project_dir=str(Path(__file__).parents[2] / "dbt"), dbt_executable=executable
    )
    assert resource._cli_version == installed_dbt_version(resource.dbt_executable)
    assert resource._initialize_dbt_core_adapter(["build"]) is None
