"""The router's request-time failure model: what it is trained on is what the router computes
online, it beats its peers on held-out days, and the registry hands its champion to routers."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml.fleet_runs import simulated_runs
from ml.request_failure import (
    compact_probabilities,
    register_request_model,
    train_request_model,
)
from ml.run_failure import add_history_features
from nofx.routing.learned import LearnedStats
from nofx.routing.prediction import (
    NUMERIC,
    AgentHistory,
    ChampionWatcher,
    RequestScorer,
    mlflow_champion_loader,
    request_features,
)
from nofx.routing.selection import Outcome

T0 = datetime(2026, 1, 5, tzinfo=UTC)


RUN = st.fixed_dictionaries(
    {
        "agent_id": st.sampled_from(["a", "b", "c"]),
        "capability": st.sampled_from(["code.generate", "text.summarize"]),
        "complexity": st.floats(0.0, 1.0),
        "input_tokens": st.integers(1, 20_000),
        "timeout_s": st.sampled_from([60.0, 1.5, 0.4]),
        "context_window_tokens": st.sampled_from([8_192, None]),
        "proficiency": st.integers(1, 5),
        "latency_ms": st.floats(100.0, 3000.0),
        "failed": st.booleans(),
    }
)


@settings(max_examples=60, deadline=None)
@given(st.lists(RUN, min_size=1, max_size=120))
def test_online_features_equal_the_training_features_at_every_instant(runs: list[dict]) -> None:
    """No train/serve skew and no leakage: for every run, the features the router computes
    from the outcomes before it (through ``LearnedStats``, as every worker learns) equal those
    ``add_history_features`` trains on, with prompts over the window rejected (a permanent
    error) and left out of the agent's history on both sides."""
    rows = []
    for i, run in enumerate(runs):
        window = run["context_window_tokens"]
        rejected = window is not None and run["input_tokens"] > window
        rows.append(
            {
                **run,
                "run_id": f"r{i:04d}",
                "occurred_at": T0 + timedelta(seconds=30 * i),
                "failed": int(run["failed"] or rejected),
                "latency_ms": 0.0 if rejected else run["latency_ms"],
            }
        )
    trained_on = add_history_features(pl.DataFrame(rows)).to_dicts()
    stats = LearnedStats()
    for row, expected in zip(rows, trained_on, strict=True):
        online = request_features(
            complexity=row["complexity"],
            input_tokens=row["input_tokens"],
            proficiency=row["proficiency"],
            context_window_tokens=row["context_window_tokens"],
            timeout_s=row["timeout_s"],
            history=stats.history(row["agent_id"]),
        )
        for name in NUMERIC:
            assert online[name] == pytest.approx(expected[name], rel=1e-9, abs=1e-12), name
        window = row["context_window_tokens"]
        rejected = window is not None and row["input_tokens"] > window
        stats.record(
            Outcome(
                row["agent_id"],
                row["capability"],
                not row["failed"],
                row["latency_ms"],
                0.0,
                error_class="permanent" if rejected else ("agent_fault" if row["failed"] else None),
            )
        )


def test_rejected_prompts_are_not_the_agents_history() -> None:
    """An agent whose only failures are prompts over its window has a clean history: the
    request caused them, and the router knows them before the call."""
    rows = [
        {
            "run_id": f"r{i}",
            "occurred_at": T0 + timedelta(seconds=i),
            "agent_id": "a",
            "capability": "code.generate",
            "complexity": 0.4,
            "input_tokens": 50_000 if i % 2 else 1_000,
            "timeout_s": 60.0,
            "context_window_tokens": 8_192,
            "proficiency": 3,
            "latency_ms": 500.0,
            "failed": i % 2,
        }
        for i in range(41)
    ]
    last = add_history_features(pl.DataFrame(rows)).to_dicts()[-1]
    assert last["recent_failure_rate"] == pytest.approx(0.05 / 21)
    assert last["prior_failure_rate"] == pytest.approx(0.5 / 30)


@pytest.fixture(scope="module")
def fleet() -> pl.DataFrame:
    runs, _ = simulated_runs(days=21, runs_per_day=800, seed=4)
    return add_history_features(runs)


@pytest.fixture(scope="module")
def trained(fleet: pl.DataFrame):  # type: ignore[no-untyped-def]
    return train_request_model(fleet, holdout_days=7)


def test_beats_the_per_agent_rate_and_learns_the_context_window(trained) -> None:  # type: ignore[no-untyped-def]
    m = trained.metrics
    assert m["roc_auc"] > m["agent_rate_auc"] + 0.15
    assert m["roc_auc"] > 0.8 and m["balanced_accuracy"] > 0.75
    assert m["roc_auc"] <= m["oracle_auc"] + 0.02
    fill = next(t for t in trained.model.terms if t.feature == "context_fill")
    # a prompt over the window is (nearly) certain to fail, one well inside it is not
    assert fill.weight(1.5) - fill.weight(0.2) > 4.0
    p = compact_probabilities(trained.model, trained.holdout)
    assert np.all((p >= 0) & (p <= 1))


@settings(max_examples=200, deadline=None)
@given(
    complexity=st.floats(0.0, 1.0),
    proficiency=st.integers(1, 5),
    fill=st.floats(1.0001, 50.0),
    margin=st.floats(-5.0, 2.0),
    recent=st.floats(0.0, 1.0),
    prior=st.floats(0.0, 1.0),
)
def test_a_prompt_over_the_window_is_stated_certain_not_learnt(
    trained, complexity, proficiency, fill, margin, recent, prior
) -> None:  # type: ignore[no-untyped-def]
    """The agent rejects it before running: p(fail) ~ 1 whatever else the request says."""
    values = {
        "complexity": complexity,
        "log_input_tokens": 9.0,
        "proficiency": float(proficiency),
        "context_fill": fill,
        "log_timeout_margin": margin,
        "recent_failure_rate": recent,
        "prior_failure_rate": prior,
    }
    assert trained.model.probability(values, {"capability": "code.generate"}) > 1 - 1e-9


@settings(max_examples=200, deadline=None)
@given(
    a=st.floats(0.0, 1.0),
    b=st.floats(0.0, 1.0),
    tokens_a=st.integers(1, 8_000),
    tokens_b=st.integers(1, 8_000),
)
def test_the_requests_shift_is_a_straight_line_not_bin_noise(
    trained, a, b, tokens_a, tokens_b
) -> None:  # type: ignore[no-untyped-def]
    """For one agent (generous timeout), how much harder a request is than another is linear
    in complexity and in log prompt size: the midpoint request sits halfway between them, so a
    request next to the typical one is never moved by which bin it fell in (ADR 0014)."""
    model = trained.model
    fast = AgentHistory()
    fast.update(False, 100.0)

    def shift(complexity: float, tokens: float) -> float:
        scorer = RequestScorer(
            model,
            capability="code.generate",
            complexity=complexity,
            input_tokens=round(tokens),
            timeout_s=600.0,
        )
        return scorer.log_odds(3, None, fast)

    mid_tokens = math.exp((math.log(tokens_a) + math.log(tokens_b)) / 2)
    halfway = (shift(a, tokens_a) + shift(b, tokens_b)) / 2
    # the prompt size is rounded to whole tokens: allow its slope over half a token
    slack = abs(next(t for t in model.terms if t.feature == "log_input_tokens").slope) * 0.5
    assert shift((a + b) / 2, mid_tokens) == pytest.approx(halfway, abs=1e-9 + slack)


def test_the_exported_numbers_round_trip(trained) -> None:  # type: ignore[no-untyped-def]
    again = type(trained.model).from_dict(trained.model.to_dict(), version="9")
    assert dataclasses.replace(again, version=trained.model.version) == trained.model
    with pytest.raises(ValueError, match="not a compact failure model"):
        type(trained.model).from_dict({"format": "pickle"})
    bad = trained.model.to_dict()
    bad["terms"] = bad["terms"][1:]
    with pytest.raises(ValueError, match="missing"):
        type(trained.model).from_dict(bad)


def test_registry_champion_reaches_the_router_and_moves_with_the_alias(
    tmp_path, trained, fleet: pl.DataFrame
) -> None:  # type: ignore[no-untyped-def]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = register_request_model(trained, tracking_uri=uri, artifact_root=tmp_path / "art")
    assert first.promoted and first.reason.startswith("promoted: first version")
    watcher = ChampionWatcher(mlflow_champion_loader("nofx-request-failure", uri))
    assert watcher.poll() is True and watcher() is not None
    assert watcher().version == first.version
    assert watcher().to_dict() == trained.model.to_dict()
    assert watcher.poll() is False  # same alias: nothing reloaded

    # a model trained on flipped labels is worse on the same holdout: it stays challenger
    flipped = fleet.with_columns((1 - pl.col("failed")).alias("failed"))
    worse = dataclasses.replace(trained, model=train_request_model(flipped, holdout_days=7).model)
    worse.metrics = {**trained.metrics, "brier": 0.9}
    second = register_request_model(worse, tracking_uri=uri, artifact_root=tmp_path / "art")
    assert not second.promoted and second.alias == "challenger"
    assert watcher.poll() is False

    # a better one (the same model, registered again with a better score) takes the alias
    better = dataclasses.replace(trained, metrics={**trained.metrics, "brier": 1e-6})
    third = register_request_model(better, tracking_uri=uri, artifact_root=tmp_path / "art")
    assert third.promoted
    assert watcher.poll() is True and watcher().version == third.version


def test_a_registry_outage_keeps_the_model_it_has(trained) -> None:  # type: ignore[no-untyped-def]
    answers: list[object] = [("1", trained.model.to_dict()), RuntimeError("registry down"), None]

    def loader():  # type: ignore[no-untyped-def]
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    watcher = ChampionWatcher(loader, interval_s=0.01)
    assert watcher.poll()
    assert not watcher.poll() and "registry down" in (watcher.error or "")
    assert watcher() is not None and watcher().version == "1"
    assert not watcher.poll() and watcher.error is None  # no champion: keep serving v1
    assert watcher() is not None


def test_the_product_router_loads_the_champion_when_asked(tmp_path, trained, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import time

    from nofx.routing.router import default_router

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    register_request_model(trained, tracking_uri=uri, artifact_root=tmp_path / "art")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("NOFX_ROUTING_MODEL", "nofx-request-failure")
    router = default_router()
    watcher = router.predictor
    assert isinstance(watcher, ChampionWatcher)
    deadline = time.monotonic() + 30
    while watcher() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the first load happens on the watcher's thread
    watcher.stop()
    assert watcher() is not None and watcher().to_dict() == trained.model.to_dict()
    monkeypatch.delenv("NOFX_ROUTING_MODEL")
    assert default_router().predictor is None  # opt-in
