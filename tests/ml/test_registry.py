"""MLflow registry: challenger / champion aliases and the promotion rule, on a real store."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from ml.errors import ModelNotFoundError
from ml.failure_model import TrainedModel, evaluate, failure_probabilities, train_failure_model
from ml.registry import (
    configure,
    decide_promotion,
    ensure_experiment,
    load_champion,
    load_champion_version,
    log_and_register,
    registry_rows,
)
from tests.ml.synthetic import feature_frame


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("mlflow")
    return {"tracking_uri": f"sqlite:///{root / 'mlflow.db'}", "artifact_root": str(root / "art")}


@pytest.fixture(scope="module")
def good() -> TrainedModel:
    return train_failure_model(feature_frame())


def flipped(model: TrainedModel) -> TrainedModel:
    """The same holdout, scored by a model trained on inverted labels: clearly worse."""
    train = model.split.train
    pipeline = train_failure_model(feature_frame()).pipeline
    pipeline.fit(train[list(model.holdout_features.columns)], 1 - train["failed"])
    metrics = evaluate(
        failure_probabilities(pipeline, model.split.holdout), model.split.holdout["failed"]
    )
    return TrainedModel(pipeline=pipeline, split=model.split, metrics=metrics)


def test_first_version_is_champion_and_a_worse_challenger_is_not_promoted(
    tracking: dict[str, str], good: TrainedModel
) -> None:
    first = log_and_register(good, name="m-worse", **tracking)
    assert (first.version, first.alias, first.promoted) == ("1", "champion", True)
    assert first.reason.startswith("promoted: first version, no champion to compare with")
    worse = flipped(good)
    assert worse.metrics["brier"] > good.metrics["brier"]
    second = log_and_register(worse, name="m-worse", **tracking)
    assert (second.version, second.alias, second.promoted) == ("2", "challenger", False)
    assert second.reason.startswith("kept as challenger:")
    assert "does not beat champion v1" in second.reason and "held-out window" in second.reason
    assert second.champion_metrics["brier"] == pytest.approx(good.metrics["brier"])
    version, _ = load_champion_version("m-worse", tracking["tracking_uri"])
    assert version == "1"
    rows = registry_rows("m-worse", tracking["tracking_uri"])
    assert [(r["version"], r["aliases"], r["is_champion"]) for r in rows] == [
        (1, "champion", True),
        (2, "challenger", False),
    ]
    assert rows[0]["brier"] == pytest.approx(good.metrics["brier"])
    assert not list(Path.cwd().glob("mlruns"))


def test_a_better_challenger_takes_the_champion_alias(
    tracking: dict[str, str], good: TrainedModel
) -> None:
    log_and_register(flipped(good), name="m-better", **tracking)
    better = log_and_register(good, name="m-better", **tracking)
    assert (better.version, better.alias, better.promoted) == ("2", "champion", True)
    assert better.reason.startswith("promoted:") and "beats champion v1" in better.reason
    champion = load_champion("m-better", tracking["tracking_uri"])
    assert failure_probabilities(champion, good.split.holdout) == pytest.approx(
        failure_probabilities(good.pipeline, good.split.holdout)
    )


def test_a_champion_that_cannot_score_the_holdout_is_replaced(
    tracking: dict[str, str], good: TrainedModel
) -> None:
    legacy_frame = feature_frame(n=40).to_pandas().rename(columns={"complexity": "legacy"})
    legacy = Pipeline(
        [
            ("features", ColumnTransformer([("keep", "passthrough", ["legacy"])])),
            ("classifier", LogisticRegression()),
        ]
    ).fit(legacy_frame[["legacy"]], legacy_frame["failed"])
    client = configure(tracking["tracking_uri"])
    experiment = ensure_experiment(client, "legacy", tracking["artifact_root"])
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.sklearn.log_model(legacy, name="model", registered_model_name="m-legacy")
    client.set_registered_model_alias("m-legacy", "champion", info.registered_model_version)
    result = log_and_register(good, name="m-legacy", **tracking)
    assert result.promoted and result.alias == "champion"
    assert result.reason.startswith("promoted: champion v1 could not score")


def test_missing_champion_and_unknown_model_are_clear(tracking: dict[str, str]) -> None:
    with pytest.raises(ModelNotFoundError, match="has no version with the alias 'champion'"):
        load_champion("never-trained", tracking["tracking_uri"])
    assert registry_rows("never-trained", tracking["tracking_uri"]) == []


def test_the_gate_compares_on_one_window_and_flags_a_champion_below_the_alert_line() -> None:
    base = {"brier": 0.20, "base_rate_brier": 0.25, "holdout_sessions": 60.0}
    worse = decide_promotion({**base, "brier": 0.22}, {"brier": 0.21}, champion_version="3")
    assert not worse.promote and "does not beat champion v3 at 0.2100" in worse.reason
    better = decide_promotion(
        {**base, "balanced_accuracy": 0.9}, {"brier": 0.21}, champion_version="3"
    )
    assert better.promote and not better.below_alert_line
    weak = decide_promotion({**base, "balanced_accuracy": 0.58}, None)
    assert weak.promote and weak.below_alert_line
    assert "0.580 is below the 0.85 alert line" in weak.reason
    useless = decide_promotion({**base, "brier": 0.26}, None)
    assert not useless.promote and "base rate" in useless.reason
    assert not useless.below_alert_line  # not promoted: nothing to alert about


def test_aliases_tags_descriptions_and_datasets_are_true(
    tracking: dict[str, str], good: TrainedModel
) -> None:
    name = "m-true"
    log_and_register(good, name=name, description="predicts failures", **tracking)
    log_and_register(flipped(good), name=name, **tracking)  # v2 loses: challenger
    third = log_and_register(
        good, name=name, description="predicts failures", training=good.split.train, **tracking
    )
    client = MlflowClient(tracking_uri=tracking["tracking_uri"])
    model = client.get_registered_model(name)
    # v3 scores exactly as v1 on the same window: not strictly better, so not promoted
    assert not third.promoted and third.alias == "challenger"
    assert model.aliases == {"champion": 1, "challenger": 3}
    assert model.description == "predicts failures"
    v1, v3 = client.get_model_version(name, "1"), client.get_model_version(name, "3")
    assert v1.tags["nofx.promotion.decision"] == "promoted"
    assert v3.tags["nofx.promotion.decision"] == "kept_as_challenger"
    assert v3.description == third.reason and v3.tags["promotion"] == third.reason
    inputs = client.get_run(third.run_id).inputs.dataset_inputs
    contexts = {i.tags[0].value for i in inputs}
    assert contexts == {"training", "evaluation"}
    holdout = next(i.dataset for i in inputs if i.tags[0].value == "evaluation")
    assert holdout.name == f"{name}-holdout"
    # a better version takes champion, and the stale challenger loses its alias
    log_and_register(flipped(good), name="m-swap", **tracking)
    log_and_register(flipped(good), name="m-swap", **tracking)
    swapped = log_and_register(good, name="m-swap", **tracking)
    aliases = client.get_registered_model("m-swap").aliases
    assert swapped.promoted and aliases == {"champion": int(swapped.version)}
    assert client.get_model_version("m-swap", "1").tags["nofx.superseded_by"] == swapped.version
