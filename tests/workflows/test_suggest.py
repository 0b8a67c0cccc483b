"""Suggestions with gains and reasons, what history adds, and how feedback re-ranks them."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from nofx.api.app import create_app
from nofx.store import EventStore
from nofx.workflows.adapt import Plan, apply_changes
from nofx.workflows.learning import learn
from nofx.workflows.model import WorkflowSpec, parse_workflow
from nofx.workflows.suggest import KINDS, PreferenceModel, suggest

FLOW = {
    "name": "release",
    "steps": [
        {"id": "spec", "capability": "plan.decompose", "estimates": {"duration_s": 30}},
        {
            "id": "code",
            "capability": "code.generate",
            "needs": ["spec"],
            "inputs": {"spec": "steps.spec.output"},
            "estimates": {"duration_s": 120, "cost_usd": 0.02},
            "max_attempts": 1,
        },
        {
            "id": "docs",
            "capability": "text.summarize",
            "needs": ["code"],
            "prompt": "write release notes",
            "estimates": {"duration_s": 60},
        },
        {
            "id": "notes",
            "capability": "text.summarize",
            "needs": ["code"],
            "prompt": "write release notes",
            "estimates": {"duration_s": 60},
        },
        {
            "id": "lint",
            "capability": "code.review",
            "needs": ["docs"],
            "estimates": {"duration_s": 5},
            "max_attempts": 1,
        },
        {
            "id": "lint2",
            "capability": "code.review",
            "needs": ["lint"],
            "estimates": {"duration_s": 5},
        },
    ],
}


def spec() -> WorkflowSpec:
    return parse_workflow(FLOW)


def history() -> list:
    rows = []
    for i in range(40):  # code.generate: 'premium' and 'budget' both 95%, at $0.02 and $0.004
        rows.append(
            {
                "capability": "code.generate",
                "agent_id": "premium",
                "succeeded": i % 20 != 0,
                "latency_ms": 2000,
                "cost_usd": 0.02,
            }
        )
        rows.append(
            {
                "capability": "code.generate",
                "agent_id": "budget",
                "succeeded": i % 25 != 0,
                "latency_ms": 2500,
                "cost_usd": 0.004,
            }
        )
    for i in range(20):  # code.review fails often
        rows.append(
            {
                "capability": "code.review",
                "agent_id": "premium",
                "succeeded": i % 3 != 0,
                "latency_ms": 1000,
                "cost_usd": 0.001,
            }
        )
    return learn(rows)


def by_kind(found: list) -> dict[str, list]:
    out: dict[str, list] = {}
    for s in found:
        out.setdefault(s.kind, []).append(s)
    return out


def test_the_spec_alone_suggests_parallelism_merging_and_caching() -> None:
    found = by_kind(suggest(spec()))
    parallel = {s.steps: s for s in found["parallelize"]}
    assert ("code", "docs") in parallel  # docs waits for code but reads none of it
    assert ("spec", "code") not in parallel  # code reads the spec: a real dependency
    assert all(s.gain_s > 0 and "reads none of its output" in s.reason for s in parallel.values())
    assert found["merge_steps"][0].steps == ("lint", "lint2")
    assert found["cache_step"][0].steps == ("docs", "notes")
    assert "cheaper_agent" not in found and "raise_retries" not in found  # need history


def test_history_adds_a_cheaper_agent_and_more_retries_as_changes() -> None:
    found = by_kind(suggest(spec(), history()))
    (cheaper,) = found["cheaper_agent"]
    assert cheaper.change == {"op": "set_agent", "step_id": "code", "agent_id": "budget"}
    assert cheaper.gain_usd > 0
    retries = {s.steps[0]: s for s in found["raise_retries"]}
    assert set(retries) == {"lint"}  # code.review fails a third of the time; code rarely
    assert retries["lint"].change["step"]["max_attempts"] == 3
    assert retries["lint"].gain_success == pytest.approx((1 - 0.35**3) - 0.65)
    # every change a suggestion carries is one the workflow can take
    changes = [s.change for s in suggest(spec(), history()) if s.change]
    from pydantic import TypeAdapter

    from nofx.workflows.adapt import Change

    adapter = TypeAdapter(Change)
    for change in changes:
        apply_changes(Plan(spec=spec()), [adapter.validate_python(change)], started=set())


def test_rejected_kinds_sink_and_accepted_ones_rise() -> None:
    model = PreferenceModel()
    before = [s.kind for s in suggest(spec(), history(), model)]
    for _ in range(20):
        model.record(before[0], accepted=False)
    after = [s.kind for s in suggest(spec(), history(), model)]
    assert after.index(before[0]) > 0


@given(
    st.lists(st.tuples(st.sampled_from(KINDS), st.booleans()), max_size=50), st.sampled_from(KINDS)
)
def test_an_acceptance_never_lowers_that_kinds_probability(history_, kind) -> None:
    model = PreferenceModel.from_feedback([{"kind": k, "accepted": a} for k, a in history_])
    before = model.acceptance(kind)
    model.record(kind, accepted=True)
    assert model.acceptance(kind) >= before
    assert 0 < model.acceptance(kind) < 1


def test_suggest_and_feedback_over_http(store: EventStore, fleet) -> None:
    flow = {
        **FLOW,
        "steps": [
            {
                **s,
                "capability": "code.generate"
                if s["capability"] != "code.review"
                else "code.review",
            }
            for s in FLOW["steps"]
        ],
    }
    with TestClient(create_app(store=store, auth_required=False)) as client:
        answer = client.post("/api/v1/workflows/suggest", json=flow).json()
        assert answer["used_history"] is False and answer["suggestions"]
        top = answer["suggestions"][0]
        assert top["reason"] and top["rank"] > 0
        ranks = [s["rank"] for s in answer["suggestions"]]
        assert ranks == sorted(ranks, reverse=True)
        for _ in range(5):
            fed = client.post(
                "/api/v1/workflows/suggestions/feedback",
                json={
                    "suggestion_id": top["suggestion_id"],
                    "kind": top["kind"],
                    "accepted": False,
                },
            )
            assert fed.status_code == 200
        assert fed.json()["acceptance"] == pytest.approx(1 / 7, abs=1e-3)
        again = client.post("/api/v1/workflows/suggest", json=flow).json()
        assert again["preferences"][top["kind"]] == pytest.approx(1 / 7, abs=1e-3)
        bad = client.post(
            "/api/v1/workflows/suggestions/feedback",
            json={"suggestion_id": "x", "kind": "teleport", "accepted": True},
        )
        assert bad.status_code == 422
