"""Materialize every asset into the Dagster instance at DAGSTER_HOME and print a summary.

``python -m dagster_project.materialize [--json PATH]`` runs five stages (ingest, transform,
daily, ml, operations), each a Dagster run that shows in the UI, with their asset checks;
it stops at the first failed stage. dbt's own output goes to ``$NOFX_HOME/materialize.log``.
The JSON summary is what ``nofx demo`` renders: {"assets", "raw_events_rows", "agent_sessions",
"success_rate", "model": {"name", "version", "alias", "metrics"}, "checks", ...}.
"""

import argparse
import contextlib
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from dagster_project.lib.instance_storage import relax_local_dagster_storage
from nofx import warehouse as nofx_warehouse
from nofx.settings import Settings

STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ingest", ("ingest",)),
    ("transform", ("transform",)),
    ("daily", ("daily",)),  # partitioned by day: every day the step calls cover, in one run
    ("ml", ("ml",)),
    ("operations", ("operations",)),
)
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


@contextlib.contextmanager
def reading(settings: Settings) -> Iterator[tuple[Any, set[str]] | None]:
    """A read connection to the warehouse the settings name and its ``schema.table`` names,
    or None when there is no warehouse yet (no DuckDB file)."""
    if not settings.warehouse_on_postgres and not settings.warehouse_path.exists():
        yield None
        return
    with nofx_warehouse.connect(settings) as conn:
        tables = {
            f"{schema}.{name}"
            for schema, name in conn.execute(
                "select table_schema, table_name from information_schema.tables"
            ).fetchall()
        }
        yield conn, tables


def partition_range(settings: Settings) -> tuple[str, str] | None:
    """First and last UTC day of the step calls (clamped to the daily partitions), or None."""
    from dagster_project.lib.partitions import DAILY_PARTITIONS

    with reading(settings) as opened:
        if opened is None or "main.agent_step_calls" not in opened[1]:
            return None
        first, last = (
            opened[0]
            .execute(
                "select cast(min(ended_at) as date), cast(max(ended_at) as date) "
                "from main.agent_step_calls"
            )
            .fetchall()[0]
        )
    if first is None:
        return None
    keys = DAILY_PARTITIONS.get_partition_keys()
    start = max(first.isoformat(), keys[0])
    end = min(last.isoformat(), keys[-1])
    return (start, end) if start <= end else None


def materializable(
    definitions: dg.Definitions,
) -> list[dg.AssetsDefinition | dg.AssetSpec | dg.SourceAsset]:
    """The definitions' assets and asset checks, as ``dg.materialize`` takes them. A
    cacheable (not yet resolved) assets definition it cannot take: this project has none,
    and one would fail here by name rather than in Dagster's argument check."""
    found: list[dg.AssetsDefinition | dg.AssetSpec | dg.SourceAsset] = []
    for item in [*(definitions.assets or []), *(definitions.asset_checks or [])]:
        if not isinstance(item, dg.AssetsDefinition | dg.AssetSpec | dg.SourceAsset):
            raise TypeError(f"{item!r} cannot be materialized in process: resolve it first")
        found.append(item)
    return found


def metadata_values(event: Any) -> dict[str, Any]:
    return {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}


def warehouse_summary(settings: Settings) -> dict[str, Any]:
    """Row counts and the success rate of finished sessions, read from the warehouse."""
    with reading(settings) as opened:
        if opened is None:
            return {"raw_events_rows": 0, "agent_sessions": 0, "success_rate": None}
        conn, tables = opened
        raw = (
            conn.execute("select count(*) from raw.raw_events").fetchall()[0][0]
            if ("raw.raw_events" in tables)
            else 0
        )
        sessions, rate, orchestration, task = 0, None, None, None
        if "main.agent_sessions" in tables:
            sessions, rate = conn.execute(
                "select count(*), avg(case when succeeded then 1.0 else 0.0 end) "
                "filter (where status in ('succeeded', 'failed', 'cancelled')) "
                "from main.agent_sessions"
            ).fetchall()[0]
            classed = conn.execute(
                "select count(*) from information_schema.columns where table_schema = 'main' "
                "and table_name = 'agent_sessions' and column_name = 'failure_class'"
            ).fetchall()[0][0]
            if classed:  # whose failure it was (ADR 0018): the 1% target is the orchestrator's
                orchestration, task = conn.execute(
                    "select avg(case when status = 'failed' and failure_class = 'orchestration' "
                    "then 1.0 else 0.0 end), avg(case when status = 'failed' and "
                    "failure_class = 'task' then 1.0 else 0.0 end) "
                    "from main.agent_sessions where status in ('succeeded', 'failed')"
                ).fetchall()[0]
        predictions = (
            conn.execute("select count(*) from analytics.operational_predictions").fetchall()[0][0]
            if "analytics.operational_predictions" in tables
            else 0
        )
        open_alerts = (
            conn.execute("select count(*) from analytics.alerts where status = 'open'").fetchall()[
                0
            ][0]
            if "analytics.alerts" in tables
            else 0
        )
        recommendations, savings = (
            conn.execute(
                "select count(*), coalesce(sum(estimated_savings_usd), 0) "
                "from analytics.recommendations"
            ).fetchall()[0]
            if "analytics.recommendations" in tables
            else (0, 0.0)
        )
    return {
        "raw_events_rows": int(raw),
        "agent_sessions": int(sessions),
        "success_rate": None if rate is None else float(rate),
        "orchestration_failure_rate": None if orchestration is None else float(orchestration),
        "task_failure_rate": None if task is None else float(task),
        "predictions": int(predictions),
        "open_alerts": int(open_alerts),
        "recommendations": int(recommendations),
        "estimated_savings_usd": float(savings),
    }


# Every table Track C (predictions, forecasts, anomalies, alerts, analytics) fills.
TRACK_C_TABLES = (
    "analytics.operational_predictions",
    "analytics.prediction_log",
    "analytics.prediction_accuracy",
    "analytics.prediction_models",
    "analytics.usage_forecasts",
    "analytics.step_duration_forecasts",
    "analytics.pool_demand_forecasts",
    "analytics.agent_anomalies",
    "analytics.alert_forecasts",
    "analytics.alerts",
    "analytics.alert_evaluations",
    "analytics.custom_metric_values",
    "analytics.recommendations",
    "analytics.analytics_insights",
    "main.workflow_adaptations",
    "main.pool_scaling_decisions",
    "main.api_latency_windows",
    "main.api_usage_hourly",
)


def track_c_summary(settings: Settings) -> dict[str, Any]:
    """Rows per Track C table (None when not published) and every rule evaluated so far."""
    counts: dict[str, int | None] = {}
    with reading(settings) as opened:
        if opened is None:
            return {"track_c": {}, "rules_evaluated": []}
        conn, tables = opened
        for name in TRACK_C_TABLES:
            counts[name] = (
                int(conn.execute(f"select count(*) from {name}").fetchall()[0][0])
                if name in tables
                else None
            )
        rules: list[str] = []
        if counts.get("analytics.alert_evaluations"):
            rules = [
                r
                for (r,) in conn.execute(
                    "select distinct rule_id from analytics.alert_evaluations order by 1"
                ).fetchall()
            ]
    return {"track_c": counts, "rules_evaluated": rules}


def model_summary(metadata: dict[str, Any]) -> dict[str, Any] | None:
    if "version" not in metadata:
        return None
    metrics = metadata.get("metrics") or {}
    return {
        "name": metadata.get("model_name"),
        "version": str(metadata["version"]),
        "alias": metadata.get("alias"),
        "promoted": metadata.get("promoted"),
        "reason": metadata.get("reason"),
        "metrics": {k: float(v) for k, v in metrics.items()},
    }


def materialize_all(
    settings: Settings,
    *,
    instance: dg.DagsterInstance | None = None,
    say: Callable[[str], None] = print,
    only: set[str] | None = None,
) -> dict[str, Any]:
    """Run the stages in order against ``settings``; returns the summary (``ok`` says if all
    stages succeeded)."""
    from dagster_project.definitions import defs
    from dagster_project.lib.resources import build_resources

    started = time.monotonic()
    definitions = defs()
    graph = definitions.resolve_asset_graph()
    assets = materializable(definitions)
    resources = build_resources(settings)
    instance = instance or dg.DagsterInstance.get()
    if instance.root_directory:  # the local instance: its SQLite commits need not fsync
        relax_local_dagster_storage(Path(instance.root_directory))
    materialized: list[str] = []
    checks: dict[str, bool] = {}
    model: dict[str, Any] | None = None
    skipped: dict[str, str] = {}
    runs: list[str] = []
    ok = True
    log_path = settings.home / "materialize.log"
    stages = [(s, g) for s, g in STAGES if only is None or s in only]
    for index, (stage, groups) in enumerate(stages, start=1):
        keys = [
            key for key in graph.materializable_asset_keys if graph.get(key).group_name in groups
        ]
        names = ", ".join(sorted(k.to_user_string() for k in keys))
        tags = {"nofx/stage": stage}
        if stage == "daily":
            days = partition_range(settings)
            if days is None:
                say(f"[{index}/{len(stages)}] {stage}: no step calls yet, nothing to roll up")
                continue
            tags.update({RANGE_START_TAG: days[0], RANGE_END_TAG: days[1]})
            names += f" (days {days[0]} to {days[1]})"
        say(f"[{index}/{len(stages)}] {stage}: {names}")
        with log_path.open("a") as log, contextlib.redirect_stdout(log):
            result = dg.materialize(
                assets,
                selection=keys,
                instance=instance,
                resources=resources,
                run_config=QUIET_RUN_CONFIG,
                raise_on_error=False,
                tags=tags,
            )
        runs.append(result.run_id)
        for event in result.get_asset_materialization_events():
            name = event.materialization.asset_key.to_user_string()
            materialized.append(name)
            metadata = metadata_values(event)
            if name == "failure_model":
                model = model_summary(metadata)
            if "skipped_reason" in metadata:
                skipped[name] = str(metadata["skipped_reason"])
        evaluations = result.get_asset_check_evaluations()
        for evaluation in evaluations:
            checks[f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"] = bool(
                evaluation.passed
            )
        failed = [
            f"{e.asset_key.to_user_string()}:{e.check_name}" for e in evaluations if not e.passed
        ]
        say(
            f"      {stage}: {'ok' if result.success else 'FAILED'} "
            f"({len(evaluations) - len(failed)}/{len(evaluations)} checks passed"
            + (f"; failed: {', '.join(failed)}" if failed else "")
            + f") run {result.run_id}"
        )
        if not result.success:
            ok = False
            say(f"      see {log_path} and the Dagster UI (run {result.run_id}) for details")
            break
    summary = {
        "ok": ok,
        "assets": materialized,
        **warehouse_summary(settings),
        **track_c_summary(settings),
        "model": model,
        "checks": checks,
        "skipped": skipped,
        "dagster_runs": runs,
        "dagster_home": str(settings.dagster_home),
        "warehouse": (
            "postgresql (NOFX_DBT_TARGET=postgres)"
            if settings.warehouse_on_postgres
            else str(settings.warehouse_path)
        ),
        "duration_s": round(time.monotonic() - started, 2),
    }
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dagster_project.materialize", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--json", type=Path, help="write the summary as JSON to this file")
    parser.add_argument(
        "--stages",
        help="comma-separated stages to run (default: all): " + ",".join(s for s, _ in STAGES),
    )
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    settings.ensure_dirs()
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    instance_config = settings.dagster_home / "dagster.yaml"
    if not instance_config.exists():
        instance_config.write_text("telemetry:\n  enabled: false\n")
    warnings.filterwarnings("ignore")
    with dg.DagsterInstance.get() as instance:
        only = set(args.stages.split(",")) if args.stages else None
        summary = materialize_all(settings, instance=instance, only=only)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2, default=str))
    print(
        f"done in {summary['duration_s']}s: {summary['raw_events_rows']} raw events, "
        f"{summary['agent_sessions']} sessions, "
        f"{sum(summary['checks'].values())}/{len(summary['checks'])} checks passed"
        + (
            f", model v{summary['model']['version']} @{summary['model']['alias']}"
            if summary["model"]
            else ""
        )
    )
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
