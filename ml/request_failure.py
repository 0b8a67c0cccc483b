"""The router's failure model: fitted here, served as plain numbers by ``nofx.routing.prediction``.

Inputs are request-time only (see :data:`nofx.routing.prediction.NUMERIC`): the request, the
candidate's declaration, and its outcomes strictly before the decision, computed by
``ml.run_failure.add_history_features`` exactly as the router computes them online.

Each numeric feature is cut into quantile bins (plus a fixed edge at a full context window),
one-hot encoded, and a regularised logistic regression learns one weight per bin: a
generalised additive model whose whole state is a few dozen numbers. Its peer is a plain
logistic regression on the same features (one weight per feature), and the agent's own past
failure rate used as the score.

Registration: the compact model is logged as ``compact_model.json`` in an MLflow run and
registered as a version whose source is that artifact; it becomes ``champion`` when its
Brier score on the challenger's holdout beats the champion's on the same rows.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import polars as pl
from mlflow.exceptions import MlflowException
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from ml.failure_model import PRIMARY_METRIC, evaluate, youden_threshold
from ml.registry import (
    RegistrationResult,
    champion_version,
    configure,
    decide_promotion,
    ensure_experiment,
    finish_registration,
    finite,
)
from ml.run_failure import RUN_LABEL, _auc, day_split
from nofx.routing.prediction import CATEGORICAL, NUMERIC, BinnedTerm, CompactFailureModel

MODEL_NAME = "nofx-request-failure"
DESCRIPTION = (
    "The router's request-time failure model: p(an agent call fails) from facts known when "
    "the call is routed, exported as plain numbers (compact_model.json) the router evaluates "
    "per candidate; held-out window = the last days of calls."
)
# chosen on the development seeds (bench.models DEVELOPMENT_SEEDS), never on held-out ones
N_BINS = 8
C = 1.0
# Where risk bends by construction: a prompt over the window is its own bin, and a timeout
# margin (log of timeout over expected latency) matters between about -2 and 2, a region
# quantiles would spend one bin on because most calls have a generous timeout.
FIXED_EDGES = {
    "context_fill": (1.0,),
    "log_timeout_margin": (-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0),
}


# Request terms the anchored score reads as "how much harder than a typical request": bins
# there turn sampling noise into a per-request shift (bins of +-0.4 log-odds moved a request
# of typical difficulty by +0.7 on the tiered fleet, enough to buy a model 30x the price),
# so they are straight lines in log-odds (fixed edges still apply: over the window is a rule).
LINEAR = frozenset({"complexity", "log_input_tokens", "context_fill"})


def bin_edges(values: np.ndarray, n_bins: int, fixed: tuple[float, ...] = ()) -> tuple[float, ...]:
    """Inner quantile edges of the training values (ties merged), plus any fixed edges."""
    quantiles = np.quantile(values, np.linspace(0, 1, n_bins + 1)[1:-1]) if len(values) else []
    return tuple(sorted({float(q) for q in quantiles} | set(fixed)))


def _design(
    frame: pd.DataFrame,
    edges: dict[str, tuple[float, ...]],
    cats: dict[str, list[str]],
    scales: dict[str, tuple[float, float]],
) -> np.ndarray:
    """Per numeric feature: its standardised value (the slope) then its one-hot bins."""
    columns = []
    for feature in NUMERIC:
        values = frame[feature].to_numpy(dtype=float)
        mean, sd = scales[feature]
        idx = np.searchsorted(np.asarray(edges[feature]), values, side="left")
        one_hot = np.zeros((len(frame), len(edges[feature]) + 1))
        one_hot[np.arange(len(frame)), idx] = 1.0
        columns.append(((values - mean) / sd)[:, None])
        columns.append(one_hot)
    for feature in CATEGORICAL:
        values = frame[feature].astype(str).to_numpy()
        columns.append(np.column_stack([(values == c).astype(float) for c in cats[feature]]))
    return np.hstack(columns)


# A prompt over the agent's window is rejected before the agent runs: certain, so the model
# states it (log-odds 30: p = 1 - 1e-13) rather than learning it.
OVER_WINDOW_LOG_ODDS = 30.0


def fit_compact(
    train: pd.DataFrame, *, n_bins: int = N_BINS, c: float = C, threshold: float | None = None
) -> CompactFailureModel:
    """Fit the binned additive logistic model and export it as plain numbers.

    It learns from the calls the agent could run (prompt within its window); the rejections
    are a rule, not a fit. Fitted on all rows, the rejections leaked into the prompt-size and
    fill terms (long prompts fail more, because more of them are over *some* window), which
    moved every agent's p(fail) for long prompts that fit (ADR 0014)."""
    full = train
    fits = train["context_fill"].to_numpy(dtype=float) <= 1.0
    if fits.any() and (~fits).any():
        train = train[fits]
    edges = {
        f: bin_edges(
            train[f].to_numpy(dtype=float), 1 if f in LINEAR else n_bins, FIXED_EDGES.get(f, ())
        )
        for f in NUMERIC
    }
    cats = {f: sorted(train[f].astype(str).unique().tolist()) for f in CATEGORICAL}
    scales = {f: (float(train[f].mean()), float(train[f].std()) or 1.0) for f in NUMERIC}
    labels = train[RUN_LABEL].to_numpy(dtype=int)
    classifier = LogisticRegression(C=c, max_iter=5000)
    classifier.fit(_design(train, edges, cats, scales), labels)
    weights = classifier.coef_[0]
    intercept = float(classifier.intercept_[0])
    terms, at = [], 0
    for feature in NUMERIC:
        mean, sd = scales[feature]
        slope = float(weights[at]) / sd  # back to raw units: w * (x - mean) / sd
        intercept -= slope * mean
        n = len(edges[feature]) + 1
        bins = tuple(float(w) for w in weights[at + 1 : at + 1 + n])
        terms.append(BinnedTerm(feature, edges[feature], bins, slope))
        at += 1 + n
    categories: dict[str, dict[str, float]] = {}
    for feature in CATEGORICAL:
        categories[feature] = {v: float(weights[at + i]) for i, v in enumerate(cats[feature])}
        at += len(cats[feature])
    terms = [_over_window_is_certain(t) if t.feature == "context_fill" else t for t in terms]
    model = CompactFailureModel(intercept, tuple(terms), categories)
    if threshold is None:
        threshold = youden_threshold(
            full[RUN_LABEL].to_numpy(dtype=int), compact_probabilities(model, full)
        )
    return CompactFailureModel(model.intercept, model.terms, model.categories, threshold)


def _over_window_is_certain(term: BinnedTerm) -> BinnedTerm:
    """The bin above a full window (fill > 1) set to a certain failure, whatever the slope."""
    at = term.edges.index(1.0) + 1
    weights = list(term.weights)
    for i in range(at, len(weights)):
        weights[i] = OVER_WINDOW_LOG_ODDS
    return BinnedTerm(term.feature, term.edges, tuple(weights), term.slope)


def compact_probabilities(model: CompactFailureModel, frame: pd.DataFrame) -> np.ndarray:
    """The model over a frame, through the very code the router runs."""
    numbers = frame[list(NUMERIC)].to_dict("records")
    labels = frame[list(CATEGORICAL)].astype(str).to_dict("records")
    return np.array([model.probability(v, k) for v, k in zip(numbers, labels, strict=True)])


def logistic_baseline(train: pd.DataFrame, c: float = C) -> Pipeline:
    """The strong simple peer: one weight per (scaled) feature plus the capability."""
    pipeline = Pipeline(
        [
            (
                "features",
                ColumnTransformer(
                    [
                        ("categories", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL)),
                        ("numbers", StandardScaler(), list(NUMERIC)),
                    ]
                ),
            ),
            ("classifier", LogisticRegression(C=c, max_iter=5000)),
        ]
    )
    pipeline.fit(train[list(NUMERIC + CATEGORICAL)], train[RUN_LABEL].astype(int))
    return pipeline


@dataclass
class RequestFailureModel:
    model: CompactFailureModel
    metrics: dict[str, float] = field(default_factory=dict)
    holdout: pd.DataFrame = field(default_factory=pd.DataFrame)


def train_request_model(
    frame: pl.DataFrame, *, holdout_days: int | None = 7, n_bins: int = N_BINS, c: float = C
) -> RequestFailureModel:
    """Fit on the earlier days (threshold chosen there too), score the held-out days next to
    the logistic baseline and the per-agent failure rate. ``frame`` comes from
    ``add_history_features``."""
    train, holdout = day_split(frame, holdout_days)
    model = fit_compact(train, n_bins=n_bins, c=c)
    labels = holdout[RUN_LABEL].to_numpy(dtype=int)
    base_rate = float(train[RUN_LABEL].mean())
    ours = evaluate(
        compact_probabilities(model, holdout),
        labels,
        base_rate=base_rate,
        threshold=model.threshold,
    )
    peer = logistic_baseline(train, c)
    peer_train = peer.predict_proba(train[list(NUMERIC + CATEGORICAL)])[:, 1]
    peer_scores = peer.predict_proba(holdout[list(NUMERIC + CATEGORICAL)])[:, 1]
    logistic = evaluate(
        peer_scores,
        labels,
        threshold=youden_threshold(train[RUN_LABEL].to_numpy(dtype=int), peer_train),
    )
    agent_rate = holdout["prior_failure_rate"].to_numpy()
    metrics = {
        **ours,
        "decision_threshold": model.threshold,
        "holdout_runs": float(len(labels)),
        "train_runs": float(len(train)),
        "logistic_auc": logistic["roc_auc"],
        "logistic_balanced_accuracy": logistic["balanced_accuracy"],
        "logistic_brier": logistic["brier"],
        "agent_rate_auc": _auc(labels, agent_rate),
        "agent_rate_balanced_accuracy": evaluate(
            agent_rate,
            labels,
            threshold=youden_threshold(
                train[RUN_LABEL].to_numpy(dtype=int), train["prior_failure_rate"].to_numpy()
            ),
        )["balanced_accuracy"],
    }
    if "true_failure_probability" in holdout:
        metrics["oracle_auc"] = _auc(labels, holdout["true_failure_probability"].to_numpy())
    return RequestFailureModel(model=model, metrics=metrics, holdout=holdout)


def _load_version_model(client: Any, name: str, version: Any) -> CompactFailureModel:
    path = mlflow.artifacts.download_artifacts(artifact_uri=f"{version.source}/compact_model.json")
    return CompactFailureModel.from_dict(json.loads(Path(path).read_text()), str(version.version))


def register_request_model(
    trained: RequestFailureModel,
    *,
    tracking_uri: str,
    artifact_root: Path | str,
    name: str = MODEL_NAME,
    experiment: str = "nofx-request-failure",
) -> RegistrationResult:
    """Log the compact model, register it as challenger, promote it if it beats the champion
    on the challenger's holdout (or there is none and it beats the base rate)."""
    client = configure(tracking_uri)
    experiment_id = ensure_experiment(client, experiment, artifact_root)
    labels = trained.holdout[RUN_LABEL].to_numpy(dtype=int)
    incumbent = champion_version(client, name)
    champion_metrics: dict[str, float] | None = None
    reason_error = ""
    if incumbent is not None:
        try:
            current = _load_version_model(client, name, incumbent)
            champion_metrics = evaluate(compact_probabilities(current, trained.holdout), labels)
        except (MlflowException, ValueError, OSError, KeyError) as exc:
            champion_metrics = {PRIMARY_METRIC: float("nan")}
            trained.metrics.setdefault("champion_unreadable", 1.0)
            reason_error = f"{type(exc).__name__}: {exc}"
        else:
            reason_error = ""
    decision = decide_promotion(
        trained.metrics,
        champion_metrics,
        champion_version=None if incumbent is None else str(incumbent.version),
        comparison_error=(reason_error or None) if incumbent is not None else None,
    )
    reason = decision.reason
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.set_tags({"nofx.model": name, "nofx.promotion": reason})
        mlflow.log_params(
            {"features": ",".join(NUMERIC + CATEGORICAL), "format": "compact-logodds"}
        )
        mlflow.log_metrics(finite(trained.metrics))
        if champion_metrics is not None:
            mlflow.log_metrics({f"champion_{k}": v for k, v in finite(champion_metrics).items()})
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "compact_model.json"
            path.write_text(json.dumps(trained.model.to_dict(), indent=1))
            mlflow.log_artifact(str(path), artifact_path="compact_model")
        source = f"{run.info.artifact_uri}/compact_model"
    with contextlib.suppress(MlflowException):  # already registered
        client.create_registered_model(name)
    version = str(client.create_model_version(name, source, run_id=run.info.run_id).version)
    return finish_registration(
        client,
        name,
        version,
        run.info.run_id,
        decision,
        incumbent=incumbent,
        description=DESCRIPTION,
        metrics=trained.metrics,
        champion_metrics=champion_metrics,
        reason=reason,
    )
