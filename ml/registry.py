"""MLflow 3 logging and registry for NOFX models: challenger / champion by alias, no stages.

Each training run logs the model and registers a new version. The promotion gate
(``decide_promotion``) makes it ``champion`` only when it beats the current champion on the
challenger's own held-out window (the most recent sessions or days, never the training
rows; both models scored on the same rows), or when there is no champion yet and it beats
the base rate. A version that loses is the ``challenger``; the two aliases are never on one
version. A champion below the product's alert line (balanced accuracy 0.85, the
``prediction_accuracy`` alert rule) is promoted only with ``below_alert_line`` set, which
the data platform turns into an open alert. Serving always loads ``models:/<name>@champion``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from ml.errors import ModelNotFoundError
from ml.failure_model import PRIMARY_METRIC, beats, evaluate, failure_probabilities

CHALLENGER = "challenger"
CHAMPION = "champion"
# the product's alert line for a failure model (nofx.alerts' prediction_accuracy rule)
ALERT_LINE_METRIC = "balanced_accuracy"
ALERT_LINE = 0.85
# Types our pipelines hold beyond sklearn's own; skops refuses to load anything unlisted.
# types our pipelines hold that skops does not trust by default (the run model's splines)
SKOPS_TRUSTED_TYPES = [
    "numpy.dtype",
    "scipy._lib.array_api_compat.numpy._aliases.asarray",
    "scipy.interpolate._bsplines.BSpline",
]


@dataclass(frozen=True)
class RegistrationResult:
    """What a training run left in the registry."""

    name: str
    version: str
    run_id: str
    alias: str
    promoted: bool
    reason: str
    metrics: dict[str, float] = field(default_factory=dict)
    champion_metrics: dict[str, float] | None = None
    below_alert_line: bool = False


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str  # a sentence that stays true: it says when and against what it was decided
    below_alert_line: bool = False


def decide_promotion(
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    *,
    champion_version: str | None = None,
    comparison_error: str | None = None,
    alert_line: float = ALERT_LINE,
) -> PromotionDecision:
    """The promotion gate, as a pure function of metrics measured on one held-out window.

    ``champion`` holds the current champion's metrics on the challenger's holdout (None when
    there is no champion). Promotion needs a strictly better primary metric than the
    champion and than always predicting the base rate; a promoted model below the alert
    line is flagged so that an alert is raised, never promoted silently."""
    mine = challenger.get(PRIMARY_METRIC, float("nan"))
    window = f"on the held-out window ({int(challenger.get('holdout_sessions') or challenger.get('holdout_runs') or 0)} rows)"
    if not beats(challenger, None):
        floor = challenger.get("base_rate_brier", float("nan"))
        return PromotionDecision(
            False,
            f"kept as challenger: {PRIMARY_METRIC} {mine:.4f} does not beat always predicting "
            f"the base rate ({floor:.4f}) {window}",
        )
    promote = beats(challenger, champion)
    if champion is None:
        reason = f"promoted: first version, no champion to compare with; {PRIMARY_METRIC} {mine:.4f} beats the base rate {window}"
    elif comparison_error is not None:
        reason = (
            f"promoted: champion v{champion_version} could not score {window} ({comparison_error})"
        )
    else:
        theirs = champion.get(PRIMARY_METRIC, float("nan"))
        verb = "promoted" if promote else "kept as challenger"
        verdict = "beats" if promote else "does not beat"
        reason = (
            f"{verb}: {PRIMARY_METRIC} {mine:.4f} {verdict} champion v{champion_version} at "
            f"{theirs:.4f} {window}"
        )
    accuracy = challenger.get(ALERT_LINE_METRIC)
    below = bool(
        promote and accuracy is not None and math.isfinite(accuracy) and accuracy < alert_line
    )
    if below:
        reason += (
            f"; {ALERT_LINE_METRIC} {accuracy:.3f} is below the {alert_line:.2f} alert line, "
            "so the prediction_accuracy alert is raised"
        )
    return PromotionDecision(promote, reason, below)


def apply_promotion(
    client: MlflowClient,
    name: str,
    version: str,
    decision: PromotionDecision,
    *,
    previous_champion: str | None,
) -> str:
    """Move the aliases and write tags that stay true; returns the new version's alias.

    Promoted: ``champion`` moves to it, the old champion is tagged as superseded, and a stale
    ``challenger`` (a version that lost to the old champion) loses its alias. Kept: it is the
    ``challenger``. So ``champion`` and ``challenger`` never name the same version."""
    tags = {
        "promotion": decision.reason,
        "nofx.promotion.decision": "promoted" if decision.promote else "kept_as_challenger",
        "nofx.below_alert_line": str(decision.below_alert_line).lower(),
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    if not decision.promote:
        client.set_registered_model_alias(name, CHALLENGER, version)
        return CHALLENGER
    client.set_registered_model_alias(name, CHAMPION, version)
    if previous_champion is not None:
        client.set_model_version_tag(name, previous_champion, "nofx.superseded_by", version)
    aliases = client.get_registered_model(name).aliases
    if CHALLENGER in aliases:
        client.delete_registered_model_alias(name, CHALLENGER)
    return CHAMPION


def describe(
    client: MlflowClient,
    name: str,
    version: str,
    model_description: str,
    decision: PromotionDecision,
) -> None:
    """Descriptions a reader of the MLflow UI needs: what the model predicts, and why this
    version has the alias it has."""
    client.update_registered_model(name, description=model_description)
    client.update_model_version(name, version, description=decision.reason)


def log_datasets(training: pd.DataFrame | None, holdout: pd.DataFrame, name: str) -> None:
    """The rows the run trained and was judged on, as MLflow inputs (mlflow.log_input)."""
    from mlflow.data.pandas_dataset import from_pandas

    if training is not None:
        mlflow.log_input(from_pandas(training, name=f"{name}-train"), context="training")
    mlflow.log_input(from_pandas(holdout, name=f"{name}-holdout"), context="evaluation")


def pip_requirements() -> list[str]:
    """The model's runtime requirements, pinned to what trained it (saves MLflow's slow
    inference of requirements, which loads the model in a subprocess)."""
    import numpy
    import pandas
    import sklearn
    import skops

    return [
        f"mlflow=={mlflow.__version__}",
        f"scikit-learn=={sklearn.__version__}",
        f"numpy=={numpy.__version__}",
        f"pandas=={pandas.__version__}",
        f"skops=={skops.__version__}",
    ]


def configure(tracking_uri: str) -> MlflowClient:
    """Point MLflow (tracking and registry) at ``tracking_uri`` and return a client for it."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def ensure_experiment(client: MlflowClient, name: str, artifact_root: Path | str) -> str:
    """The experiment's id, creating it with artifacts under ``artifact_root`` (not ./mlruns)."""
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    root = Path(artifact_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    return client.create_experiment(name, artifact_location=(root / name).as_uri())


def finite(metrics: dict[str, float]) -> dict[str, float]:
    """Metrics MLflow can store and JSON can carry (NaN, e.g. AUC on one class, is dropped)."""
    return {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}


def champion_version(client: MlflowClient, name: str) -> Any | None:
    """The model version aliased ``champion``, or None when there is none (or no model)."""
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def load_champion_version(name: str, tracking_uri: str) -> tuple[str, Any]:
    """(version, model) of the current champion, read once so the two always agree."""
    client = configure(tracking_uri)
    version = champion_version(client, name)
    if version is None:
        raise ModelNotFoundError(
            f"model {name!r} has no version with the alias {CHAMPION!r}",
            hint="materialize the failure_model asset; it needs finished sessions with both "
            "outcomes to train",
        )
    return str(version.version), mlflow.sklearn.load_model(f"models:/{name}/{version.version}")


def champion_decision_threshold(name: str, tracking_uri: str) -> float:
    """The probability from which the champion's predictions say 'will fail' (chosen on its
    training data; 0.5 for a version trained before thresholds were recorded)."""
    client = configure(tracking_uri)
    version = champion_version(client, name)
    if version is None or not version.run_id:
        return 0.5
    return float(client.get_run(version.run_id).data.metrics.get("decision_threshold", 0.5))


def load_champion(name: str, tracking_uri: str) -> Any:
    """The champion model (an sklearn pipeline with predict_proba) from ``models:/N@champion``."""
    configure(tracking_uri)
    load_champion_version(name, tracking_uri)  # a clear error when there is no champion
    return mlflow.sklearn.load_model(f"models:/{name}@{CHAMPION}")


class Registrable(Protocol):
    """What registering needs of a trained model (the session and the run failure models)."""

    pipeline: Any
    metrics: dict[str, float]

    @property
    def holdout_features(self) -> pd.DataFrame: ...

    @property
    def holdout_labels(self) -> np.ndarray: ...


def log_and_register(
    trained: Registrable,
    *,
    name: str,
    tracking_uri: str,
    artifact_root: Path | str,
    experiment: str = "nofx-failure-model",
    tags: dict[str, str] | None = None,
    description: str = "A NOFX failure model: the probability that work fails, from facts known "
    "when it is asked for.",
    training: pd.DataFrame | None = None,
) -> RegistrationResult:
    """Log the run (with its training and held-out rows as inputs), register a version, and
    pass it through the promotion gate."""
    client = configure(tracking_uri)
    experiment_id = ensure_experiment(client, experiment, artifact_root)
    holdout = trained.holdout_features
    incumbent = champion_version(client, name)
    champion_metrics: dict[str, float] | None = None
    comparison_error: str | None = None
    if incumbent is not None:
        try:
            champion_model = mlflow.sklearn.load_model(f"models:/{name}/{incumbent.version}")
            champion_metrics = evaluate(
                failure_probabilities(champion_model, holdout, list(holdout.columns)),
                trained.holdout_labels,
            )
        except Exception as exc:  # a champion built on other features cannot be compared
            champion_metrics = {PRIMARY_METRIC: float("nan"), "error": float("nan")}
            comparison_error = f"{type(exc).__name__}: {exc}"
    decision = decide_promotion(
        trained.metrics,
        champion_metrics,
        champion_version=None if incumbent is None else str(incumbent.version),
        comparison_error=comparison_error if incumbent is not None else None,
    )
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.set_tags({"nofx.model": name, **(tags or {})})
        mlflow.log_params(
            {
                "features": ",".join(holdout.columns),
                "classifier": type(trained.pipeline.steps[-1][1]).__name__,
                "primary_metric": PRIMARY_METRIC,
            }
        )
        mlflow.log_metrics(finite(trained.metrics))
        if champion_metrics is not None:
            mlflow.log_metrics({f"champion_{k}": v for k, v in finite(champion_metrics).items()})
        log_datasets(training, holdout.assign(label=trained.holdout_labels), name)
        example = holdout.head(5)
        signature = infer_signature(example, trained.pipeline.predict_proba(example))
        info = mlflow.sklearn.log_model(
            trained.pipeline,
            name="model",
            registered_model_name=name,
            signature=signature,
            input_example=example,
            pyfunc_predict_fn="predict_proba",
            skops_trusted_types=SKOPS_TRUSTED_TYPES,
            pip_requirements=pip_requirements(),
        )
        mlflow.set_tag("nofx.promotion", decision.reason)
    return finish_registration(
        client,
        name,
        str(info.registered_model_version),
        run.info.run_id,
        decision,
        incumbent=incumbent,
        description=description,
        metrics=trained.metrics,
        champion_metrics=champion_metrics,
    )


def finish_registration(
    client: MlflowClient,
    name: str,
    version: str,
    run_id: str,
    decision: PromotionDecision,
    *,
    incumbent: Any | None,
    description: str,
    metrics: dict[str, float],
    champion_metrics: dict[str, float] | None,
    reason: str | None = None,
) -> RegistrationResult:
    """Move the aliases as decided, describe the version, and say what happened."""
    alias = apply_promotion(
        client,
        name,
        version,
        decision,
        previous_champion=None if incumbent is None else str(incumbent.version),
    )
    describe(client, name, version, description, decision)
    return RegistrationResult(
        name=name,
        version=version,
        run_id=run_id,
        alias=alias,
        promoted=decision.promote,
        reason=decision.reason if reason is None else reason,
        metrics=finite(metrics),
        champion_metrics=None if champion_metrics is None else finite(champion_metrics),
        below_alert_line=decision.below_alert_line,
    )


def registry_rows(name: str, tracking_uri: str) -> list[dict[str, Any]]:
    """One row per registered version, for the warehouse's ``prediction_models`` table."""
    client = configure(tracking_uri)
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:  # pragma: no cover - a store that cannot search at all
        return []
    if not versions:
        return []
    aliases_by_version: dict[str, list[str]] = {}
    for alias, number in client.get_registered_model(name).aliases.items():
        aliases_by_version.setdefault(str(number), []).append(alias)
    rows = []
    for version in sorted(versions, key=lambda v: int(v.version)):
        metrics = client.get_run(version.run_id).data.metrics if version.run_id else {}
        aliases = sorted(aliases_by_version.get(str(version.version), []))
        rows.append(
            {
                "model_name": name,
                "version": int(version.version),
                "aliases": ",".join(aliases),
                "is_champion": CHAMPION in aliases,
                "run_id": version.run_id,
                "source": version.source,
                "created_at": datetime.fromtimestamp(version.creation_timestamp / 1000, tz=UTC),
                "brier": metrics.get("brier"),
                "log_loss": metrics.get("log_loss"),
                "roc_auc": metrics.get("roc_auc"),
                "accuracy": metrics.get("accuracy"),
                "balanced_accuracy": metrics.get("balanced_accuracy"),
                "train_sessions": metrics.get("train_sessions"),
                "promotion": (version.tags or {}).get("promotion"),
                "holdout_rows": metrics.get("holdout_sessions", metrics.get("holdout_runs")),
                "below_alert_line": (version.tags or {}).get("nofx.below_alert_line") == "true",
            }
        )
    return rows


def log_tracking_run(
    *,
    experiment: str,
    tracking_uri: str,
    artifact_root: Path | str,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str] | None = None,
) -> str:
    """Track a training run that is refitted every time rather than registered (forecasters):
    its parameters and backtest metrics, so their quality over time is on record."""
    client = configure(tracking_uri)
    experiment_id = ensure_experiment(client, experiment, artifact_root)
    run = client.create_run(experiment_id, tags=tags or {})
    for key, value in params.items():
        client.log_param(run.info.run_id, key, value)
    for key, value in finite(metrics).items():
        client.log_metric(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id)
    return str(run.info.run_id)
