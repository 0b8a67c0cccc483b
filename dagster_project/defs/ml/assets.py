"""ML assets: train the failure models, and write the session model's predictions.

The work is in the ``ml`` package (no Dagster there); these assets only move data between
the warehouse, ``ml`` and MLflow, and mirror the registry into ``analytics.prediction_models``.
A model asset is keyed by the model; the predictions are one asset per table they write
(``operational_predictions``, ``prediction_log``).
"""

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import numpy as np
import polars as pl

from dagster_project.lib import groups
from dagster_project.lib.resources import MlflowResource, WarehouseResource
from dagster_project.lib.warehouse import ANALYTICS_SCHEMA, frame_schema, replace_table
from ml.errors import InsufficientDataError, ModelNotFoundError
from ml.failure_model import failure_probabilities, train_failure_model
from ml.features import session_features
from ml.registry import champion_decision_threshold, load_champion_version, log_and_register
from ml.registry import registry_rows as model_registry_rows
from ml.request_failure import MODEL_NAME as REQUEST_FAILURE_MODEL_NAME
from ml.request_failure import register_request_model, train_request_model
from ml.run_failure import add_history_features, runs_from_step_calls, train_run_failure_model

RUN_FAILURE_MODEL_NAME = "nofx-run-failure"
# a day-based holdout once there are two weeks of runs; before that, the latest quarter
RUN_HOLDOUT_DAYS = 7
PREDICTION_MODELS_TABLE = f"{ANALYTICS_SCHEMA}.prediction_models"
PREDICTIONS_TABLE = f"{ANALYTICS_SCHEMA}.operational_predictions"
# Predictions made while the session was still open, kept for good: the honest accuracy.
PREDICTION_LOG_TABLE = f"{ANALYTICS_SCHEMA}.prediction_log"

PREDICTION_MODELS_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "model_name": pl.String,
    "version": pl.Int64,
    "aliases": pl.String,
    "is_champion": pl.Boolean,
    "run_id": pl.String,
    "source": pl.String,
    "created_at": pl.Datetime("us", "UTC"),
    "brier": pl.Float64,
    "log_loss": pl.Float64,
    "roc_auc": pl.Float64,
    "accuracy": pl.Float64,
    "balanced_accuracy": pl.Float64,
    "train_sessions": pl.Float64,
    "promotion": pl.String,
    "holdout_rows": pl.Float64,
    "below_alert_line": pl.Boolean,
}
MODEL_DESCRIPTIONS = {
    "session": "Will a NOFX session fail? Logistic model on agent_sessions features known when "
    "the session is requested; scored on the most recent sessions held out from training. "
    "Used by the Predictions page and the prediction_accuracy alert.",
    RUN_FAILURE_MODEL_NAME: "Will one agent call fail? Model on agent_step_calls (timeout margin "
    "against the agent's recent latency, its recent failures, the task); held-out window = the "
    "last days of calls.",
}


def mirror_registry(warehouse: WarehouseResource, mlflow: MlflowResource) -> int:
    rows = [
        row
        for name in (mlflow.model_name, RUN_FAILURE_MODEL_NAME, REQUEST_FAILURE_MODEL_NAME)
        for row in model_registry_rows(name, mlflow.tracking_uri)
    ]
    frame = pl.DataFrame(rows, schema=PREDICTION_MODELS_SCHEMA)
    with warehouse.connect() as conn:
        replace_table(conn, PREDICTION_MODELS_TABLE, frame)
    return frame.height


@dg.asset(
    group_name=groups.ML,
    kinds={"mlflow", "scikitlearn"},
    deps=["agent_sessions", "agent_step_calls"],
    description="Session failure model trained on agent_sessions; registered in MLflow as "
    "challenger, promoted to champion when it beats the champion on the same holdout.",
)
def failure_model(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    with warehouse.connect(read_only=True) as conn:
        features = session_features(conn)
    try:
        trained = train_failure_model(features)
    except InsufficientDataError as exc:
        context.log.warning(f"failure_model not trained: {exc}")
        return dg.MaterializeResult(
            metadata={
                "skipped_reason": str(exc),
                "sessions": features.height,
                "registry_versions": mirror_registry(warehouse, mlflow),
            }
        )
    registered = log_and_register(
        trained,
        name=mlflow.model_name,
        tracking_uri=mlflow.tracking_uri,
        artifact_root=mlflow.artifact_root,
        tags={"dagster.run_id": context.run.run_id},
        description=MODEL_DESCRIPTIONS["session"],
        training=trained.split.train,
    )
    context.log.info(
        f"{registered.name} v{registered.version} @{registered.alias}: {registered.reason}"
    )
    metadata: dict[str, Any] = {
        "model_name": registered.name,
        "version": registered.version,
        "alias": registered.alias,
        "promoted": registered.promoted,
        "reason": registered.reason,
        "below_alert_line": registered.below_alert_line,
        "run_id": registered.run_id,
        "sessions": features.height,
        "metrics": dg.MetadataValue.json(registered.metrics),
        "registry_versions": mirror_registry(warehouse, mlflow),
        "dagster/column_schema": frame_schema(PREDICTION_MODELS_SCHEMA),
    }
    metadata.update({f"metric_{k}": v for k, v in registered.metrics.items()})
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    group_name=groups.ML,
    kinds={"mlflow", "scikitlearn"},
    deps=["agent_step_calls"],
    description="Agent-run failure model (will this call fail?) on agent_step_calls: the "
    "timeout margin against the agent's recent latency, its recent failures, the task. "
    "Registered as nofx-run-failure with the same champion/challenger rule.",
)
def run_failure_model(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    runs, holdout_days = step_call_runs(warehouse)
    try:
        trained = train_run_failure_model(runs, holdout_days=holdout_days)
    except InsufficientDataError as exc:
        return skipped(context, "run_failure_model", exc, runs)
    registered = log_and_register(
        trained,
        name=RUN_FAILURE_MODEL_NAME,
        tracking_uri=mlflow.tracking_uri,
        artifact_root=mlflow.artifact_root,
        experiment="nofx-run-failure-model",
        tags={"dagster.run_id": context.run.run_id},
        description=MODEL_DESCRIPTIONS[RUN_FAILURE_MODEL_NAME],
    )
    return registered_result(registered, runs, holdout_days, warehouse, mlflow)


@dg.asset(
    group_name=groups.ML,
    kinds={"mlflow", "scikitlearn"},
    deps=["agent_step_calls"],
    description="The router's request-time failure model on agent_step_calls: a binned "
    "additive logistic model exported as plain numbers (compact_model.json), registered as "
    "nofx-request-failure; routers load its champion and swap it in when the alias moves.",
)
def request_failure_model(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, mlflow: MlflowResource
) -> dg.MaterializeResult:
    runs, holdout_days = step_call_runs(warehouse)
    try:
        trained = train_request_model(runs, holdout_days=holdout_days)
    except InsufficientDataError as exc:
        return skipped(context, "request_failure_model", exc, runs)
    registered = register_request_model(
        trained, tracking_uri=mlflow.tracking_uri, artifact_root=mlflow.artifact_root
    )
    return registered_result(registered, runs, holdout_days, warehouse, mlflow)


def step_call_runs(warehouse: WarehouseResource) -> tuple[pl.DataFrame, int | None]:
    """Agent runs with their history features, and the held-out window both run-level
    models use: the last RUN_HOLDOUT_DAYS once the data spans twice that."""
    with warehouse.connect(read_only=True) as conn:
        calls = conn.sql("select * from main.agent_step_calls").pl()
    runs = add_history_features(runs_from_step_calls(calls))
    span_days = 0.0
    if runs.height:
        first, last = runs["occurred_at"].min(), runs["occurred_at"].max()
        assert isinstance(first, datetime) and isinstance(last, datetime), "a datetime column"
        span_days = (last - first).total_seconds() / 86_400
    return runs, RUN_HOLDOUT_DAYS if span_days >= 2 * RUN_HOLDOUT_DAYS else None


def skipped(
    context: dg.AssetExecutionContext, asset: str, exc: Exception, runs: pl.DataFrame
) -> dg.MaterializeResult:
    context.log.warning(f"{asset} not trained: {exc}")
    return dg.MaterializeResult(metadata={"skipped_reason": str(exc), "runs": runs.height})


def registered_result(
    registered: Any,
    runs: pl.DataFrame,
    holdout_days: int | None,
    warehouse: WarehouseResource,
    mlflow: MlflowResource,
) -> dg.MaterializeResult:
    metadata: dict[str, Any] = {
        "model_name": registered.name,
        "version": registered.version,
        "alias": registered.alias,
        "reason": registered.reason,
        "below_alert_line": bool(getattr(registered, "below_alert_line", False)),
        "runs": runs.height,
        "holdout": f"last {holdout_days} days" if holdout_days else "latest quarter of runs",
        "registry_versions": mirror_registry(warehouse, mlflow),
    }
    metadata.update({f"metric_{k}": v for k, v in registered.metrics.items()})
    return dg.MaterializeResult(metadata=metadata)


def predictions_frame(
    features: pl.DataFrame,
    probabilities: Any,
    model_name: str,
    model_version: str,
    threshold: float = 0.5,
) -> pl.DataFrame:
    """One prediction per session, with the outcome alongside once it is known;
    ``predicted_failure`` uses the champion's decision threshold."""
    predicted_at = datetime.now(UTC).replace(tzinfo=None)
    return features.select(
        pl.concat_str([pl.col("session_id"), pl.lit(f"/{model_name}/{model_version}")]).alias(
            "prediction_id"
        ),
        "session_id",
        "tenant_id",
        "agent_id",
        pl.lit("session_failure").alias("prediction_type"),
        pl.lit(model_name).alias("model_name"),
        pl.lit(int(model_version)).alias("model_version"),
        pl.Series("failure_probability", probabilities, dtype=pl.Float64),
        (pl.Series("p", probabilities, dtype=pl.Float64) >= threshold).alias("predicted_failure"),
        pl.col("status").alias("actual_status"),
        pl.lit(predicted_at).alias("predicted_at"),
    )


def log_open_predictions(conn: Any, frame: pl.DataFrame) -> int:
    """Append predictions for sessions whose outcome was not known yet (once per session and
    model version): the rows accuracy monitoring can trust, unlike in-sample predictions."""
    open_rows = frame.filter(~pl.col("actual_status").is_in(["succeeded", "failed", "cancelled"]))
    conn.execute(f"create schema if not exists {ANALYTICS_SCHEMA}").fetchall()
    conn.register("open_rows", open_rows)
    try:
        conn.execute(
            f"create table if not exists {PREDICTION_LOG_TABLE} as "
            "select * from open_rows where false"
        ).fetchall()
        before = conn.execute(f"select count(*) from {PREDICTION_LOG_TABLE}").fetchall()[0][0]
        conn.execute(
            f"insert into {PREDICTION_LOG_TABLE} select * from open_rows "
            f"where prediction_id not in (select prediction_id from {PREDICTION_LOG_TABLE})"
        ).fetchall()
        after = conn.execute(f"select count(*) from {PREDICTION_LOG_TABLE}").fetchall()[0][0]
    finally:
        conn.unregister("open_rows")
    return int(after - before)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "operational_predictions",
            group_name=groups.ML,
            kinds={"duckdb", "mlflow"},
            deps=["failure_model"],
            description="Failure probability for every session from "
            "models:/<name>@champion, in analytics.operational_predictions.",
        ),
        dg.AssetSpec(
            "prediction_log",
            group_name=groups.ML,
            kinds={"duckdb", "mlflow"},
            deps=["failure_model"],
            description="The predictions made while their session was still open, appended "
            "once per session and model version, in analytics.prediction_log: what live "
            "accuracy is scored on.",
        ),
    ],
)
def session_failure_predictions(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, mlflow: MlflowResource
) -> Iterator[dg.MaterializeResult]:
    """One scoring run writes both tables: the current predictions and the log of those made
    before the outcome."""
    try:
        version, model = load_champion_version(mlflow.model_name, mlflow.tracking_uri)
    except ModelNotFoundError as exc:
        context.log.warning(f"no predictions written: {exc}")
        for key in ("operational_predictions", "prediction_log"):
            yield dg.MaterializeResult(
                asset_key=key, metadata={"skipped_reason": str(exc), "rows": 0}
            )
        return
    with warehouse.connect(read_only=True) as conn:
        features = session_features(conn, finished_only=False)
    probabilities: np.ndarray | list[float] = (
        failure_probabilities(model, features.to_pandas()) if features.height else []
    )
    threshold = champion_decision_threshold(mlflow.model_name, mlflow.tracking_uri)
    frame = predictions_frame(features, probabilities, mlflow.model_name, version, threshold)
    mean_probability = frame["failure_probability"].mean()  # None when there are no rows
    with warehouse.connect() as conn:
        replace_table(conn, PREDICTIONS_TABLE, frame)
        logged = log_open_predictions(conn, frame)
    yield dg.MaterializeResult(
        asset_key="operational_predictions",
        metadata={
            "rows": frame.height,
            "model_version": version,
            "decision_threshold": threshold,
            "mean_failure_probability": (
                float(mean_probability) if isinstance(mean_probability, int | float) else 0.0
            ),
            "dagster/row_count": frame.height,
            "dagster/column_schema": frame_schema(frame.schema),
        },
    )
    yield dg.MaterializeResult(
        asset_key="prediction_log",
        metadata={"logged_before_outcome": logged, "model_version": version},
    )
