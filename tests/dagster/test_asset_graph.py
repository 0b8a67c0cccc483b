"""The whole asset graph, as loaded from dagster_project/defs, against a committed snapshot.

Every asset (key, group, kinds, dependencies, partitions, what it is written with), every
check (blocking or not), job, sensor and schedule is in ``snapshots/asset_graph.json``, so a
change to the graph shows up as a diff in review. After an intended change (a new asset, a
dbt model or test, a renamed key), regenerate and commit the file:

    NOFX_UPDATE_SNAPSHOTS=1 pytest tests/dagster/test_asset_graph.py
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"
UPDATE_ENV = "NOFX_UPDATE_SNAPSHOTS"


def describe_partitions(partitions: dg.PartitionsDefinition | None) -> dict[str, Any] | None:
    """The partitioning without its start date (the day of the store's first event, which
    differs between machines)."""
    if partitions is None:
        return None
    if isinstance(partitions, dg.TimeWindowPartitionsDefinition):
        return {
            "type": type(partitions).__name__,
            "cron_schedule": partitions.cron_schedule,
            "timezone": partitions.timezone,
            "end_offset": partitions.end_offset,
        }
    return {"type": type(partitions).__name__}


def graph_snapshot(definitions: dg.Definitions) -> dict[str, Any]:
    """What the Dagster UI shows of the project, as plain sorted data."""
    graph = definitions.resolve_asset_graph()
    specs = {
        spec.key: spec
        for owner in [*(definitions.assets or []), *(definitions.asset_checks or [])]
        for spec in getattr(owner, "check_specs", [])
    }
    assets: dict[str, Any] = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        name = key.to_user_string()
        assets[name] = {
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "partitions": describe_partitions(node.partitions_def),
            "written_with": sorted(
                k.to_user_string() for k in node.execution_set_asset_keys if k != key
            ),
            "checks": {
                check.name: {"blocking": bool(specs[check].blocking)}
                for check in sorted(node.check_keys, key=lambda c: c.name)
            },
        }
    jobs = {}
    for job in sorted(definitions.jobs or [], key=lambda j: j.name):
        resolved = definitions.resolve_job_def(job.name)
        jobs[job.name] = {
            "assets": sorted(
                k.to_user_string() for k in resolved.asset_layer.executable_asset_keys
            ),
            "partitioned": resolved.partitions_def is not None,
        }
    sensors = {
        s.name: {
            "job": s.job_name if s.has_jobs else None,
            "requests_assets": sorted(k.to_user_string() for k in s.asset_selection.resolve(graph))
            if s.asset_selection is not None
            else None,
            "default_status": s.default_status.value,
            "minimum_interval_seconds": s.minimum_interval_seconds,
        }
        for s in sorted(definitions.sensors or [], key=lambda s: s.name)
    }
    schedules = {
        s.name: {
            "job": s.job_name,
            "cron_schedule": s.cron_schedule,
            "timezone": s.execution_timezone,
            "default_status": s.default_status.value,
        }
        for s in sorted(definitions.schedules or [], key=lambda s: s.name)
    }
    return {
        "assets": assets,
        "jobs": jobs,
        "sensors": sensors,
        "schedules": schedules,
        "resources": sorted((definitions.resources or {}).keys()),
    }


def render(snapshot: dict[str, Any]) -> str:
    return json.dumps(snapshot, indent=2, sort_keys=True) + "\n"


def snapshot_mismatch(committed: str, loaded: str) -> str | None:
    """None when equal, else the diff and how to regenerate the snapshot."""
    if committed == loaded:
        return None
    diff = "".join(
        difflib.unified_diff(
            committed.splitlines(keepends=True),
            loaded.splitlines(keepends=True),
            fromfile=f"committed {SNAPSHOT.name}",
            tofile="loaded definitions",
        )
    )
    return (
        f"The asset graph differs from {SNAPSHOT}:\n{diff}\n"
        f"If the change is intended, regenerate and commit the snapshot: "
        f"{UPDATE_ENV}=1 pytest tests/dagster/test_asset_graph.py"
    )


@pytest.fixture(scope="module")
def definitions() -> dg.Definitions:
    from dagster_project.definitions import defs

    return defs()


def test_the_asset_graph_matches_the_committed_snapshot(definitions: dg.Definitions) -> None:
    loaded = render(graph_snapshot(definitions))
    if os.environ.get(UPDATE_ENV) == "1":
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(loaded)
    committed = SNAPSHOT.read_text() if SNAPSHOT.exists() else ""
    mismatch = snapshot_mismatch(committed, loaded)
    assert mismatch is None, mismatch


def test_a_changed_graph_fails_with_the_diff_and_how_to_regenerate(
    definitions: dg.Definitions,
) -> None:
    snapshot = graph_snapshot(definitions)
    snapshot["assets"]["raw_events"]["group"] = "elsewhere"
    mismatch = snapshot_mismatch(render(graph_snapshot(definitions)), render(snapshot))
    assert mismatch is not None
    changed = [line.replace(" ", "") for line in mismatch.splitlines()]
    assert '-"group":"ingest",' in changed and '+"group":"elsewhere",' in changed
    assert f"{UPDATE_ENV}=1 pytest tests/dagster/test_asset_graph.py" in mismatch


def test_every_definition_is_loaded_once(definitions: dg.Definitions) -> None:
    """Loading from the folder collects module-level objects: a definition imported into a
    second module would be collected twice."""
    for kind in ("assets", "asset_checks", "jobs", "sensors", "schedules"):
        objects = list(getattr(definitions, kind) or [])
        assert len(objects) == len({id(o) for o in objects}), kind


def test_asset_keys_are_the_tables_they_write(definitions: dg.Definitions) -> None:
    """A Python asset that writes a warehouse table is keyed by that table, one key per table
    (the descriptions name the table: analytics.<key> or raw.<key>)."""
    graph = definitions.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.group_name in ("transform", "daily") or "duckdb" not in node.kinds:
            continue  # dbt models are keyed by the model, which is the table
        name = key.to_user_string()
        description = node.description or ""
        assert f"analytics.{name}" in description or f"raw.{name}" in description, name
