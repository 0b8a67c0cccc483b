"""Everything materialized once on real sessions: the warehouse agrees with the store."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from mlflow import MlflowClient

from dagster_project.defs.ingest.assets import raw_events
from dagster_project.lib.resources import FAILURE_MODEL_NAME, build_resources
from nofx.registry import AgentRegistry
from nofx.sessions import SessionService
from nofx.store import EventStore
from tests.pipeline_fixture import PipelineRun

# real dbt build and MLflow: one pipeline run shared by the module (about 25 s)
pytestmark = pytest.mark.slow


def definitions_graph():
    from dagster_project.definitions import defs

    return defs().resolve_asset_graph()


def warehouse_rows(run: PipelineRun, sql: str) -> list[tuple]:
    with duckdb.connect(str(run.settings.warehouse_path), read_only=True) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture(scope="module")
def store(pipeline: PipelineRun):
    s = EventStore(pipeline.settings.database_url)
    yield s
    s.dispose()


def test_every_stage_ran_and_every_asset_materialized(pipeline: PipelineRun) -> None:
    summary = pipeline.summary
    assert summary["ok"], pipeline.lines
    graph = definitions_graph()
    # every asset the stages select was materialized (a multi-asset writes each of its tables)
    assert set(summary["assets"]) == {k.to_user_string() for k in graph.materializable_asset_keys}
    assert {"operational_predictions", "prediction_log", "alerts", "alert_evaluations"} <= set(
        summary["assets"]
    )
    assert [line.split("]")[0] for line in pipeline.lines if line.startswith("[")] == [
        "[1/5",
        "[2/5",
        "[3/5",
        "[4/5",
        "[5/5",
    ]


def test_raw_events_hold_exactly_the_store(pipeline: PipelineRun, store: EventStore) -> None:
    # the last stage writes alerts into the store after the copy: those land next refresh
    before_alerts = [e.position for e in store.read_all(limit=100_000) if e.stream_type != "alert"]
    assert pipeline.summary["raw_events_rows"] == len(before_alerts)
    positions = [r[0] for r in warehouse_rows(pipeline, "select position from raw.raw_events")]
    assert sorted(positions) == before_alerts


def test_agent_sessions_mart_agrees_with_the_sessions_projection(
    pipeline: PipelineRun, store: EventStore
) -> None:
    service = SessionService(store, AgentRegistry(store))
    projected = {s.session_id: s for s in service.list(limit=10_000)}
    mart = {
        row[0]: row[1:]
        for row in warehouse_rows(
            pipeline,
            "select session_id, status, succeeded, attempts, cost_usd, input_tokens, "
            "output_tokens, agent_id from agent_sessions",
        )
    }
    assert pipeline.summary["agent_sessions"] == len(projected) == len(mart) == 126
    for session_id, session in projected.items():
        status, succeeded, attempts, cost, tokens_in, tokens_out, agent_id = mart[session_id]
        assert status == session.status.value
        assert succeeded == (session.status.value == "succeeded")
        assert attempts == session.attempts
        assert cost == pytest.approx(session.cost_usd)
        assert (tokens_in, tokens_out) == (session.input_tokens, session.output_tokens)
        assert agent_id == session.agent_id
    finished = [s for s in projected.values() if s.status.terminal]
    rate = sum(s.status.value == "succeeded" for s in finished) / len(finished)
    assert pipeline.summary["success_rate"] == pytest.approx(rate)
    assert 0 < rate < 1  # both outcomes occur, so the model has something to learn


def test_agents_and_step_calls_marts(pipeline: PipelineRun, store: EventStore) -> None:
    agents = AgentRegistry(store).list()
    mart_agents = warehouse_rows(
        pipeline, "select agent_id, name, is_active, len(capabilities) from agents"
    )
    assert {(a.agent_id, a.name, True, len(a.capabilities)) for a in agents} == set(mart_agents)
    outcomes = sum(
        1
        for e in store.read_all(limit=100_000)
        if e.type in ("StepCompleted", "StepFailed", "StepAbandoned")
    )
    ((calls, missing_price),) = warehouse_rows(
        pipeline,
        "select count(*), count(*) filter (where input_per_1k_tokens is null) "
        "from agent_step_calls",
    )
    assert (calls, missing_price) == (outcomes, 0)
    ((daily_calls,),) = warehouse_rows(pipeline, "select sum(calls) from agent_performance_daily")
    assert daily_calls == outcomes  # no abandoned attempts in these runs


def test_every_check_passed(pipeline: PipelineRun) -> None:
    checks = pipeline.summary["checks"]
    assert checks["raw_events:raw_events_valid"] is True
    assert checks["agent_sessions:agent_sessions_valid"] is True
    assert len(checks) > 40  # the dbt tests come through as asset checks too
    assert all(checks.values()), [name for name, ok in checks.items() if not ok]


def test_model_registered_as_champion_and_predictions_written(pipeline: PipelineRun) -> None:
    model = pipeline.summary["model"]
    assert model is not None, pipeline.summary["skipped"]
    assert (model["name"], model["version"], model["alias"]) == (
        FAILURE_MODEL_NAME,
        "1",
        "champion",
    )
    assert {"roc_auc", "brier", "log_loss", "accuracy"} <= set(model["metrics"])
    client = MlflowClient(tracking_uri=pipeline.settings.mlflow_tracking_uri)
    champion = client.get_model_version_by_alias(FAILURE_MODEL_NAME, "champion")
    assert str(champion.version) == "1"
    assert pipeline.summary["predictions"] == 126
    ((low, high, version),) = warehouse_rows(
        pipeline,
        "select min(failure_probability), max(failure_probability), max(model_version) "
        "from analytics.operational_predictions",
    )
    assert 0 <= low <= high <= 1 and version == 1
    # "will fail" from the champion's own threshold (chosen on training data), not 0.5
    threshold = client.get_run(champion.run_id).data.metrics["decision_threshold"]
    assert 0 < threshold < 1
    ((mismatched, flagged),) = warehouse_rows(
        pipeline,
        "select count(*) filter (where predicted_failure != (failure_probability >= "
        f"{threshold})), count(*) filter (where predicted_failure) "
        "from analytics.operational_predictions",
    )
    assert mismatched == 0 and flagged > 0
    assert warehouse_rows(
        pipeline,
        "select version, is_champion from analytics.prediction_models "
        f"where model_name = '{FAILURE_MODEL_NAME}'",
    ) == [(1, True)]
    assert not list(Path.cwd().glob("mlruns"))  # artifacts went under NOFX_HOME


def test_rerunning_raw_events_copies_nothing_twice(
    pipeline: PipelineRun, store: EventStore
) -> None:
    def rerun() -> dict:
        result = dg.materialize(
            [raw_events], instance=pipeline.instance, resources=build_resources(pipeline.settings)
        )
        (event,) = result.get_asset_materialization_events()
        return {k: v.value for k, v in event.materialization.metadata.items()}

    # the first rerun picks up what the alerts stage wrote after the pipeline's copy
    alerts_written = sum(1 for e in store.read_all(limit=100_000) if e.stream_type == "alert")
    assert rerun()["rows_added"] == alerts_written
    again = rerun()
    assert again["rows_added"] == 0
    assert again["dagster/row_count"] == store.count_events()


def test_summary_json_and_runs_in_the_dagster_home(pipeline: PipelineRun) -> None:
    summary = pipeline.summary
    assert {"assets", "raw_events_rows", "agent_sessions", "success_rate", "model", "checks"} <= (
        set(summary)
    )
    assert summary["dagster_home"] == str(pipeline.settings.dagster_home)
    records = pipeline.instance.get_run_records()
    assert {r.dagster_run.run_id for r in records} >= set(summary["dagster_runs"])
    assert len(summary["dagster_runs"]) == 5  # one run per stage, visible in the UI
    assert pipeline.lines[-1].startswith("done in ")
    assert (pipeline.settings.dagster_home / "dagster.yaml").exists()


def test_every_model_and_column_is_documented(pipeline: PipelineRun) -> None:
    """The schema files describe exactly the columns the models build, each with a line."""
    from dagster_project.lib.dbt import dbt_project

    manifest = json.loads(dbt_project().manifest_path.read_text())
    models = [n for n in manifest["nodes"].values() if n["resource_type"] == "model"]
    # every model file (a staging model per stream type and the marts, ADR 0027)
    assert len(models) == len(list(dbt_project().project_dir.glob("models/*/*.sql")))
    for model in models:
        assert model["description"], model["name"]
        built = {
            row[0]
            for row in warehouse_rows(
                pipeline,
                "select column_name from information_schema.columns "
                f"where table_schema = 'main' and table_name = '{model['name']}'",
            )
        }
        documented = {name for name, col in model["columns"].items() if col["description"]}
        assert built == documented, model["name"]


def test_duration_forecasts_match_the_step_calls_and_are_tracked(pipeline: PipelineRun) -> None:
    """Quantiles per capability equal the mart's; an agent with under 20 completed runs of a
    capability borrows the capability's numbers and says so; the fit is an MLflow run. Usage
    forecasts wait for a week of history."""
    capability_rows = warehouse_rows(
        pipeline,
        "select f.latency_p50_ms, f.latency_p90_ms, f.samples, q.p50, q.p90, q.n "
        "from analytics.step_duration_forecasts f join ("
        "  select capability, quantile_cont(latency_ms, 0.5) as p50, "
        "  quantile_cont(latency_ms, 0.9) as p90, count(*) as n from agent_step_calls "
        "  where outcome = 'completed' group by all) q using (capability) "
        "where f.agent_id is null and f.level = 'capability'",
    )
    assert capability_rows
    for p50, p90, samples, true_p50, true_p90, n in capability_rows:
        assert samples == n >= 20
        assert p50 == pytest.approx(true_p50) and p90 == pytest.approx(true_p90)
        assert p90 >= p50
    agent_rows = warehouse_rows(
        pipeline,
        "select samples, level from analytics.step_duration_forecasts where agent_id is not null",
    )
    assert agent_rows and all(
        (level == "agent") == (samples >= 20) for samples, level in agent_rows
    )
    client = MlflowClient(tracking_uri=pipeline.settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name("nofx-duration-forecasts")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert runs and runs[0].data.metrics["groups"] > 0
    assert warehouse_rows(pipeline, "select count(*) from analytics.usage_forecasts") == [(0,)]


def test_agent_communications_mart_holds_every_bus_message(
    pipeline: PipelineRun, store: EventStore
) -> None:
    """Each message the patterns exchanged is one mart row, in channel order, with its sender."""
    from sqlalchemy import select

    from nofx.store.schema import agent_communications

    with store.engine.connect() as conn:
        stored = {
            r.message_id: (r.channel, r.channel_seq, r.sender, r.session_id)
            for r in conn.execute(select(agent_communications))
        }
    mart = {
        r[0]: r[1:]
        for r in warehouse_rows(
            pipeline,
            "select message_id, channel, channel_seq, sender, session_id from agent_communications",
        )
    }
    assert stored and mart == stored
    kinds = warehouse_rows(
        pipeline,
        "select channel_kind, count(*), max(channel_seq), bool_or(stored_as_blob) "
        "from agent_communications group by 1 order by 1",
    )
    assert kinds == [("direct", 1, 1, True), ("topic", 3, 3, False)]


def test_workflow_plans_mart_matches_the_parsed_workflows(
    pipeline: PipelineRun, store: EventStore
) -> None:
    """Every step of every requested workflow, with the parser's defaults filled in."""
    from nofx.workflows import parse_workflow

    expected = {}
    for event in store.read_all(limit=100_000, stream_type="session"):
        if event.type == "SessionRequested" and event.payload["pattern"] == "workflow":
            spec = parse_workflow(event.payload["request"]["workflow"])
            for step in spec.steps:
                expected[f"{event.payload['session_id']}/{step.id}"] = (
                    step.capability,
                    len(step.needs),
                    pytest.approx(step.estimates.duration_s),
                    step.estimates.tokens,
                    step.max_attempts,
                    step.priority,
                )
    mart = {
        r[0]: r[1:]
        for r in warehouse_rows(
            pipeline,
            "select workflow_plan_step_id, capability, dependencies, estimated_duration_s, "
            "estimated_tokens, max_attempts, priority from workflow_plans",
        )
    }
    assert expected and mart == expected


def test_run_failure_model_is_registered_and_mirrored(pipeline: PipelineRun) -> None:
    """The agent-run model trains on the step calls (timeouts recorded by the runtime) and
    sits in the registry mirror next to the session model."""
    ((with_timeout, calls),) = warehouse_rows(
        pipeline, "select count(timeout_s), count(*) from agent_step_calls"
    )
    assert with_timeout == calls > 100
    client = MlflowClient(tracking_uri=pipeline.settings.mlflow_tracking_uri)
    (found,) = client.search_model_versions("name = 'nofx-run-failure'")
    version = client.get_model_version("nofx-run-failure", found.version)  # with its aliases
    metrics = client.get_run(version.run_id).data.metrics
    assert metrics["holdout_runs"] > 0 and "base_rate_brier" in metrics
    # champion only if it beats always predicting the base rate; the reason says which
    beat_base_rate = metrics["brier"] < metrics["base_rate_brier"]
    assert ("champion" in version.aliases) == beat_base_rate
    decision = version.tags["nofx.promotion.decision"]
    assert decision == ("promoted" if beat_base_rate else "kept_as_challenger")
    assert version.tags["promotion"].startswith("promoted:" if beat_base_rate else "kept")
    # promoted under the 0.85 alert line only with the flag the alert rule reads
    below = beat_base_rate and metrics["balanced_accuracy"] < 0.85
    assert version.tags["nofx.below_alert_line"] == str(below).lower()
    mirrored = warehouse_rows(
        pipeline,
        "select model_name, count(*) from analytics.prediction_models group by 1 order by 1",
    )
    assert mirrored == [
        ("nofx-request-failure", 1),  # the router's request-time model
        ("nofx-run-failure", 1),
        ("nofx-session-failure", 1),
    ]


def test_daily_marts_are_materialized_per_day_and_a_day_rebuilds_alone(
    pipeline: PipelineRun, tmp_path: Path
) -> None:
    """The daily stage records a partition for every day of step calls; rebuilding one day
    replaces that day's rows exactly (delete+insert on whole days), leaving the rest."""
    import shutil

    from dagster_project.definitions import defs
    from dagster_project.lib.resources import build_resources
    from nofx.settings import Settings

    key = dg.AssetKey("agent_performance_daily")
    days = {
        d.isoformat()
        for (d,) in warehouse_rows(
            pipeline, "select distinct cast(ended_at as date) from agent_step_calls"
        )
    }
    assert pipeline.instance.get_materialized_partitions(key) >= days
    before = warehouse_rows(pipeline, "select * from agent_performance_daily order by all")
    copy = tmp_path / "home"
    shutil.copytree(pipeline.settings.home, copy, ignore=shutil.ignore_patterns("dagster"))
    settings = Settings.from_env({"NOFX_HOME": str(copy)})
    definitions = defs()
    day = sorted(days)[-1]
    result = dg.materialize(
        list(definitions.assets or []),
        selection=[key],
        partition_key=day,
        resources=build_resources(settings),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as conn:
        after = conn.execute("select * from agent_performance_daily order by all").fetchall()
    assert after == before


def test_marts_materialize_with_their_column_types(pipeline: PipelineRun) -> None:
    event = pipeline.instance.get_latest_materialization_event(dg.AssetKey("agent_sessions"))
    assert event is not None and event.asset_materialization is not None
    schema = event.asset_materialization.metadata["dagster/column_schema"].value
    types = {c.name: c.type for c in schema.columns}
    assert types["failure_class"] == "VARCHAR" and types["succeeded"] == "BOOLEAN"
    assert types["answer_quality"] == "DOUBLE" and types["requested_at"].startswith("TIMESTAMP")


def test_every_warehouse_asset_is_a_table_of_its_name(pipeline: PipelineRun) -> None:
    """Asset keys are the tables they write: every asset of kind duckdb is a table (or dbt
    view) of the same name in raw, main or analytics after the pipeline."""
    graph = definitions_graph()
    tables = {
        name
        for (name,) in warehouse_rows(
            pipeline,
            "select table_name from information_schema.tables "
            "where table_schema in ('raw', 'main', 'analytics')",
        )
    }
    written = {
        k.to_user_string()
        for k in graph.materializable_asset_keys
        if "duckdb" in graph.get(k).kinds
    }
    assert written >= {"raw_events", "operational_predictions", "prediction_log", "alerts"}
    assert written - tables == set()
