"""The whole Definitions load: lineage, checks, jobs, sensors and schedules behave as meant
(the full graph is compared with a snapshot in test_asset_graph)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import dagster as dg
import pytest

from dagster_project.lib.dbt import DBT_PROJECT_DIR, dbt_build_args, dbt_target, manifest_is_stale


@pytest.fixture(scope="module")
def definitions() -> dg.Definitions:
    from dagster_project.definitions import defs

    return defs()


def test_lineage_runs_store_raw_dbt_ml_operations(definitions: dg.Definitions) -> None:
    """The links the snapshot (test_asset_graph) holds that matter most, said in words."""
    graph = definitions.resolve_asset_graph()

    def parents(name: str) -> set[str]:
        return {k.to_user_string() for k in graph.get(dg.AssetKey(name)).parent_keys}

    assert parents("stg_events") == {"raw_events"}  # the dbt source is the raw_events asset
    assert parents("raw_events") == set()
    assert parents("failure_model") == {"agent_sessions", "agent_step_calls"}
    # one scoring run writes both prediction tables
    assert parents("operational_predictions") == parents("prediction_log") == {"failure_model"}
    # predictive alerts are evaluated after the forecasts and predictions they read
    assert parents("alert_forecasts") >= {"usage_forecasts", "operational_predictions"}
    assert parents("alerts") >= {"alert_forecasts", "custom_metric_values", "prediction_accuracy"}
    assert parents("prediction_accuracy") >= {"prediction_log"}
    daily = graph.get(dg.AssetKey("agent_performance_daily"))
    assert daily.group_name == "daily"
    assert isinstance(daily.partitions_def, dg.DailyPartitionsDefinition)


def test_checks_are_attached_and_blocking_where_they_guard_downstream(
    definitions: dg.Definitions,
) -> None:
    graph = definitions.resolve_asset_graph()
    checks = {k.to_user_string() for k in graph.asset_check_keys}
    assert {
        "raw_events:raw_events_valid",
        "raw_events:raw_events_known_stream_types",
        "agent_sessions:agent_sessions_valid",
        "agent_sessions:unique_agent_sessions_session_id",
        "agent_sessions:relationships_agent_sessions_agent_id__agent_id__ref_agents_",
    } <= checks
    specs = {s.name: s for c in definitions.asset_checks or [] for s in c.check_specs}
    assert specs["raw_events_valid"].blocking
    assert specs["agent_sessions_valid"].blocking
    assert not specs["raw_events_known_stream_types"].blocking


def test_jobs_sensors_and_schedule(definitions: dg.Definitions) -> None:
    assert definitions.resolve_job_def("run_requested_sessions").name == "run_requested_sessions"
    everything = definitions.resolve_job_def("everything")
    assert {k.to_user_string() for k in everything.asset_layer.executable_asset_keys} >= {
        "raw_events",
        "failure_model",
        "agent_sessions",
    }
    refresh = definitions.resolve_job_def("refresh_warehouse")
    refreshed = {k.to_user_string() for k in refresh.asset_layer.executable_asset_keys}
    assert "raw_events" in refreshed and "agent_sessions" in refreshed
    assert "failure_model" not in refreshed
    sensors = {s.name: s for s in definitions.sensors or []}
    assert sensors["requested_sessions_sensor"].job_name == "run_requested_sessions"
    assert sensors["new_events_sensor"].job_name == "refresh_warehouse"
    forecasts = sensors["forecasts_materialised_sensor"]
    assert {
        k.to_user_string()
        for k in forecasts.asset_selection.resolve(definitions.resolve_asset_graph())
    } == {"alert_forecasts", "alerts", "alert_evaluations"}
    assert forecasts.default_status == dg.DefaultSensorStatus.RUNNING
    schedule = definitions.resolve_schedule_def("nightly_retrain")
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.job_name == "everything"
    assert "agent_performance_daily" not in {
        k.to_user_string() for k in everything.asset_layer.executable_asset_keys
    }  # unpartitioned runs never touch the daily marts
    assert "agent_performance_daily" in refreshed
    rollup = definitions.resolve_schedule_def("daily_rollup_schedule")
    assert rollup.job_name == "daily_rollup" and rollup.cron_schedule == "30 0 * * *"


def test_the_daily_schedule_rebuilds_yesterday_and_skips_before_the_first_event() -> None:
    from datetime import UTC, timedelta

    from dagster_project.defs.transform.schedules import daily_rollup_schedule
    from dagster_project.lib.partitions import DAILY_PARTITIONS

    start = DAILY_PARTITIONS.start.astimezone(UTC)
    tick = start + timedelta(days=2, minutes=30)
    request = daily_rollup_schedule(dg.build_schedule_context(scheduled_execution_time=tick))
    assert request.partition_key == (start + timedelta(days=1)).strftime("%Y-%m-%d")
    before = daily_rollup_schedule(
        dg.build_schedule_context(scheduled_execution_time=start + timedelta(minutes=30))
    )
    assert isinstance(before, dg.SkipReason) and "no events before" in before.skip_message


def test_what_keeps_data_fresh_runs_by_default(definitions: dg.Definitions) -> None:
    """`make up` needs no click: refresh and retraining are on; sessions are the worker's."""
    sensors = {s.name: s.default_status for s in definitions.sensors or []}
    assert sensors["new_events_sensor"] == dg.DefaultSensorStatus.RUNNING
    assert sensors["requested_sessions_sensor"] == dg.DefaultSensorStatus.STOPPED
    for name in ("nightly_retrain", "daily_rollup_schedule"):
        status = definitions.resolve_schedule_def(name).default_status
        assert status == dg.DefaultScheduleStatus.RUNNING, name


def test_daily_vars_are_whole_utc_days() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    from dagster_project.lib.dbt import daily_vars

    paris = timezone(timedelta(hours=1))
    assert daily_vars(datetime(2026, 3, 1, 1, tzinfo=paris), datetime(2026, 3, 2, tzinfo=UTC)) == {
        "min_day": "2026-03-01 00:00:00",
        "max_day": "2026-03-02 00:00:00",
    }


def test_dbt_target_comes_from_the_environment() -> None:
    assert dbt_target({}) == "duckdb"
    assert dbt_target({"NOFX_DBT_TARGET": "postgres"}) == "postgres"
    with pytest.raises(ValueError, match="NOFX_DBT_TARGET='snowflake'"):
        dbt_target({"NOFX_DBT_TARGET": "snowflake"})


def test_dbt_build_args() -> None:
    assert dbt_build_args() == ["build"]
    assert dbt_build_args(full_refresh=True) == ["build", "--full-refresh"]


def test_manifest_is_stale_when_missing_or_older_than_a_model(tmp_path: Path) -> None:
    project = tmp_path / "dbt"
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text("name: x\n")
    model = project / "models" / "m.sql"
    model.write_text("select 1")
    manifest = project / "target" / "manifest.json"
    assert manifest_is_stale(project, manifest)
    manifest.parent.mkdir()
    manifest.write_text("{}")
    past = time.time() - 60
    os.utime(model, (past, past))
    os.utime(project / "dbt_project.yml", (past, past))
    assert not manifest_is_stale(project, manifest)
    os.utime(model, None)
    assert manifest_is_stale(project, manifest)


def test_repository_manifest_is_fresh_after_load(definitions: dg.Definitions) -> None:
    assert not manifest_is_stale(DBT_PROJECT_DIR, DBT_PROJECT_DIR / "target" / "manifest.json")


def test_every_asset_check_says_what_it_checks(definitions: dg.Definitions) -> None:
    owners = [*(definitions.assets or []), *(definitions.asset_checks or [])]
    specs = [s for owner in owners for s in getattr(owner, "check_specs", [])]
    assert len(specs) > 50  # the Great Expectations checks and every dbt test
    missing = [s.key.to_user_string() for s in specs if not (s.description or "").strip()]
    assert missing == []
    by_name = {s.name: s.description for s in specs}
    assert by_name["not_null_agent_sessions_session_id"] == (
        "dbt: agent_sessions.session_id is never null."
    )
    assert by_name["relationships_agent_sessions_agent_id__agent_id__ref_agents_"] == (
        "dbt: every agent_sessions.agent_id exists in agents.agent_id."
    )
