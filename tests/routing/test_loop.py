"""The closed loop in the router: predictions move decisions, statistics are shared through the
store (every worker and the API, across restarts), and large fleets are not scanned whole."""

from __future__ import annotations

import asyncio
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from nofx.domain import Agent, AgentSpec, SessionRequest, Task, utcnow
from nofx.registry import AgentRegistry
from nofx.routing.learned import LearnedStats
from nofx.routing.prediction import NUMERIC, BinnedTerm, CompactFailureModel
from nofx.routing.router import SmartRouter, default_router
from nofx.routing.scoring import Estimate, cost_of_success, score
from nofx.routing.selection import Outcome, SelectionRequest
from nofx.runtime import Runtime, RuntimeConfig
from nofx.store import EventStore


def agent(
    name: str, price: float = 0.001, window: int | None = None, level: int = 4, latency=800.0
) -> Agent:
    now = utcnow()
    return Agent(
        agent_id=f"agt_{name}",
        name=name,
        created_at=now,
        updated_at=now,
        capabilities=[{"name": "code.generate", "proficiency": level}],
        pricing={"input_per_1k_tokens": price, "output_per_1k_tokens": price},
        provider={"kind": "simulated", "config": {"latency_median_ms": latency}},
        context_window_tokens=window,
    )


def context_model(version: str = "3") -> CompactFailureModel:
    """A hand-written model: a prompt over the window fails, recent failures raise risk."""
    terms = tuple(
        BinnedTerm(f, (1.0,), (0.0, 9.0))
        if f == "context_fill"
        else BinnedTerm(f, (), (0.0,), slope=4.0 if f == "recent_failure_rate" else 0.0)
        for f in NUMERIC
    )
    return CompactFailureModel(-3.0, terms, {"capability": {"code.generate": 0.0}}, 0.5, version)


def test_the_prediction_moves_a_long_prompt_off_a_small_window_and_says_why() -> None:
    small, large = agent("small", 0.0005, window=8_000), agent("large", 0.002, window=128_000)
    router = SmartRouter(predictor=context_model, explore=False)
    short = SelectionRequest("code.generate", input_tokens=1_000)
    long = SelectionRequest("code.generate", input_tokens=20_000)
    assert router.rank(short, [small, large])[0].agent is small  # cheaper, equally safe
    best = router.rank(long, [small, large])
    assert best[0].agent is large
    assert best[1].expected_success < 0.01
    why = best[1].reasons[0]
    assert "predicted by failure model v3" in why and "context_fill 2.5" in why
    assert "expected attempts" in best[0].reasons[1]


def test_expected_cost_of_success_prefers_the_reliable_agent_when_failures_cost_retries() -> None:
    cheap = Estimate(success=0.4, cost_usd=1.0, latency_ms=100, latency_p95_ms=200, load=0)
    steady = Estimate(success=0.95, cost_usd=1.5, latency_ms=100, latency_p95_ms=200, load=0)
    assert cost_of_success(cheap) == 2.5 and math.isclose(cost_of_success(steady), 1.5 / 0.95)
    best = min(cost_of_success(cheap), cost_of_success(steady))
    fastest = min(e.latency_ms / e.success for e in (cheap, steady))
    assert score(steady, "cost", best, fastest) > score(cheap, "cost", best, fastest)


@settings(max_examples=60, deadline=None)
@given(
    outcomes=st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.booleans(), st.floats(1, 5000)), max_size=60
    ),
    seen_locally=st.sets(st.integers(0, 59)),
)
def test_shared_statistics_count_each_outcome_once(outcomes, seen_locally) -> None:
    """Whichever process saw an outcome first, after a sync every process holds the same
    counts: the ones it recorded itself are not counted again when the store replays them."""

    class Feed:
        def __init__(self) -> None:
            self.events: list = []

        def read_all(self, *, after_position=0, limit=1000, stream_type=None, since=None):
            return [e for e in self.events if e.position > after_position][:limit]

    from nofx.domain import Event

    feed = Feed()
    here, elsewhere = LearnedStats(feed), LearnedStats(feed)
    for i, (who, ok, latency) in enumerate(outcomes):
        call = f"ses_{i}/solo/1"
        if i in seen_locally:
            here.record(Outcome(f"agt_{who}", "code.generate", ok, latency, 0.01, call_id=call))
        feed.events.append(
            Event(
                position=i + 1,
                stream_id=f"ses_{i}",
                stream_type="session",
                seq=1,
                type="StepCompleted" if ok else "StepFailed",
                tenant_id="default",
                occurred_at=utcnow(),
                idempotency_key=f"{call}/outcome",
                payload={
                    "agent_id": f"agt_{who}",
                    "capability": "code.generate",
                    "latency_ms": latency,
                    "cost_usd": 0.01,
                    "error_class": "agent_fault",
                },
            )
        )
    here.sync(force=True)
    elsewhere.sync(force=True)
    assert here.outcomes_seen == elsewhere.outcomes_seen == len(outcomes)
    for who in ("a", "b"):
        h, e = here.history(f"agt_{who}"), elsewhere.history(f"agt_{who}")
        assert (h is None) == (e is None)
        if h is not None and e is not None:
            assert (h.runs, h.failures) == (e.runs, e.failures)


async def test_a_new_router_and_the_api_see_what_the_workers_learned(
    store: EventStore, registry: AgentRegistry
) -> None:
    for i in range(3):
        registry.register(
            AgentSpec(
                name=f"sim-{i}",
                capabilities=[{"name": "code.generate", "proficiency": 3}],
                provider={"kind": "simulated", "config": {"skill": {"code.generate": 0.8}}},
            )
        )
    worker = Runtime(store, registry, config=RuntimeConfig(time_scale=0.0, seed=3))
    for _ in range(12):
        session = worker.sessions.submit(
            SessionRequest(task=Task(prompt="p", capability="code.generate"))
        )
        await worker.run_session(session.session_id)
    outcomes = [
        e for e in store.read_all(limit=10_000) if e.type in ("StepCompleted", "StepFailed")
    ]
    assert worker.selector.stats.outcomes_seen == len(outcomes) >= 12  # type: ignore[attr-defined]
    # the worker's own outcomes come back through the store without being counted twice
    worker.selector.stats.sync(force=True)  # type: ignore[attr-defined]
    assert worker.selector.stats.outcomes_seen == len(outcomes)  # type: ignore[attr-defined]

    restarted = default_router(store, explore=False)  # another process, or the API
    candidates = registry.list(capability="code.generate")
    # the API ranks in its thread pool, where reading the store is allowed
    ranked = await asyncio.to_thread(restarted.rank, SelectionRequest("code.generate"), candidates)
    assert restarted.stats.outcomes_seen == len(outcomes)
    seen = sum(int(s.reasons[0].split(", ")[-1].split()[0]) for s in ranked)
    assert seen == sum(1 for e in outcomes if e.payload.get("error_class") != "permanent")

    # another worker ranks on its event loop: it never reads the store there, and folds in
    # what a background read fetched at a later decision
    on_loop = default_router(store, explore=False)
    on_loop.rank(SelectionRequest("code.generate"), candidates)
    assert on_loop.stats.outcomes_seen == 0
    for _ in range(200):
        await asyncio.sleep(0.01)
        on_loop.rank(SelectionRequest("code.generate"), candidates)
        if on_loop.stats.outcomes_seen:
            break
    assert on_loop.stats.outcomes_seen == len(outcomes)


async def test_a_session_deadline_caps_every_call_timeout(
    store: EventStore, registry: AgentRegistry
) -> None:
    """The call carries the real deadline (the failure model's input), recorded on the event,
    instead of the runtime's generic 60 s."""
    registry.register(
        AgentSpec(
            name="slow",
            capabilities=[{"name": "code.generate", "proficiency": 3}],
            provider={
                "kind": "simulated",
                "config": {"latency_median_ms": 500, "latency_sigma": 0.01},
            },
        )
    )
    worker = Runtime(store, registry, config=RuntimeConfig(time_scale=0.0, seed=3))
    session = worker.sessions.submit(
        SessionRequest(task=Task(prompt="p", capability="code.generate"), deadline_s=20.0)
    )
    await worker.run_session(session.session_id)
    events = worker.sessions.events(session.session_id)
    started = [e.payload["timeout_s"] for e in events if e.type == "StepStarted"]
    assert started and set(started) == {20.0}


def test_large_fleets_are_shortlisted_and_agree_with_the_full_scan() -> None:
    fleet = [agent(f"a{i}", price=0.0001 * (1 + i % 97), level=1 + i % 5) for i in range(2_000)]
    indexed = SmartRouter(explore=False, shortlist=32)
    full = SmartRouter(explore=False, shortlist=None)
    request = SelectionRequest("code.generate", optimize="cost")
    fast = indexed.rank(request, fleet)
    slow = full.rank(request, fleet)
    assert len(fast) == 32 and len(slow) == 2_000
    assert fast[0].agent is slow[0].agent
    excluded = indexed.rank(
        SelectionRequest(
            "code.generate", optimize="cost", exclude=frozenset({fast[0].agent.agent_id})
        ),
        fleet,
    )
    assert fast[0].agent not in [s.agent for s in excluded]


def test_the_incremental_order_equals_a_fresh_sort_after_outcomes() -> None:
    """Moving only the agents whose statistics changed keeps the index exactly as sorting the
    fleet from scratch would order it."""
    fleet = [agent(f"a{i}", price=0.0001 * (1 + i % 7), level=1 + i % 5) for i in range(300)]
    router = SmartRouter(explore=False, shortlist=8)
    request = SelectionRequest("code.generate")
    router.rank(request, fleet)
    for i in range(200):
        router.record(
            Outcome(fleet[(i * 37) % 300].agent_id, "code.generate", i % 3 != 0, 100.0 + i, 0.01)
        )
        if i % 25 == 0:
            router.rank(request, fleet)
    router.rank(request, fleet)
    (index,) = router._indexes.values()
    fresh = sorted(
        (-router._bound_key(a, "code.generate", "balanced").key, a.agent_id) for a in fleet
    )
    assert index.order == fresh


def test_scoring_per_request_equals_the_model_on_the_full_features() -> None:
    from nofx.routing.prediction import AgentHistory, RequestScorer, request_features

    model = context_model()
    history = AgentHistory()
    for i in range(30):
        history.update(i % 4 == 0, 500.0 + 10 * i)
    for tokens, window, timeout, hist in [
        (1000, 8000, 60.0, history),
        (9000, 8000, 1.0, history),
        (500, None, 0.2, None),
    ]:
        scorer = RequestScorer(
            model,
            capability="code.generate",
            complexity=0.3,
            input_tokens=tokens,
            timeout_s=timeout,
        )
        features = request_features(
            complexity=0.3,
            input_tokens=tokens,
            proficiency=4,
            context_window_tokens=window,
            timeout_s=timeout,
            history=hist,
        )
        expected = model.probability(features, {"capability": "code.generate"})
        assert math.isclose(scorer.p_fail(4, window, hist), expected, rel_tol=1e-12)


async def test_agents_select_reports_what_the_workers_learned(
    store: EventStore, registry: AgentRegistry
) -> None:
    """The dry run over HTTP ranks on the statistics the workers wrote to the store (not a
    fresh router that has seen nothing), and explains every candidate it returns."""
    from fastapi.testclient import TestClient

    from nofx.api.app import create_app

    for i in range(3):
        registry.register(
            AgentSpec(
                name=f"sim-{i}",
                capabilities=[{"name": "code.generate", "proficiency": 3}],
                provider={"kind": "simulated", "config": {"skill": {"code.generate": 0.8}}},
            )
        )
    worker = Runtime(store, registry, config=RuntimeConfig(time_scale=0.0, seed=5))
    for _ in range(10):
        session = worker.sessions.submit(
            SessionRequest(task=Task(prompt="p", capability="code.generate"))
        )
        await worker.run_session(session.session_id)
    with TestClient(create_app(store=store, auth_required=False)) as client:
        body = client.get(
            "/api/v1/orchestration/agents/select", params={"capability": "code.generate"}
        ).json()
    assert len(body["candidates"]) == 3
    seen = [int(c["reasons"][0].split(", ")[-1].split()[0]) for c in body["candidates"]]
    assert sum(seen) >= 10
    assert all("expected attempts" in c["reasons"][1] for c in body["candidates"])
