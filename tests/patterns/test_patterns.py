"""Pair, hierarchical, swarm and auto, run for real on a simulated fleet; replay calls no agent."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nofx.domain import AgentSpec, PatternName, SessionRequest, SessionStatus, Task
from nofx.patterns.auto import PatternStats, choose_pattern
from nofx.runtime import Runtime, RuntimeConfig

CAPS = ("code.generate", "code.review", "plan.decompose", "text.summarize")


@pytest.fixture
def team(registry) -> list:
    out = []
    for i in range(5):
        out.append(
            registry.register(
                AgentSpec(
                    name=f"peer{i}",
                    capabilities=[{"name": c, "proficiency": 2 + i % 4} for c in CAPS],
                    pricing={"input_per_1k_tokens": 0.001 * (i + 1)},
                    provider={
                        "config": {"skill": dict.fromkeys(CAPS, 0.9 - 0.05 * i), "error_rate": 0.05}
                    },
                )
            )
        )
    return out


def run(runtime: Runtime, pattern: str, n: int, complexity: float = 0.5, **kw) -> list:
    ids = [
        runtime.sessions.submit(
            SessionRequest(
                task=Task(
                    prompt=f"{pattern} {i}", capability="code.generate", complexity=complexity
                ),
                pattern=pattern,
                **kw,
            )
        ).session_id
        for i in range(n)
    ]
    import asyncio

    asyncio.run(runtime.run_pending())
    return [runtime.sessions.get(sid) for sid in ids]


def events(runtime: Runtime, sid: str) -> list:
    return runtime.sessions.events(sid)


def test_pair_records_every_round_and_never_self_reviews(runtime: Runtime, team) -> None:
    sessions = run(runtime, "pair", 12)
    assert all(s.status.terminal for s in sessions)
    assert any(s.status is SessionStatus.SUCCEEDED for s in sessions)
    for s in sessions:
        reviews = [e for e in events(runtime, s.session_id) if e.type == "ReviewRecorded"]
        if not reviews:  # the first author or review step ran out of agents: a plain failure
            assert s.status is SessionStatus.FAILED, s.session_id
            continue
        assert [r.payload["round"] for r in reviews] == list(range(1, len(reviews) + 1))
        assert all(r.payload["author_agent_id"] != r.payload["reviewer_agent_id"] for r in reviews)
        if s.status is SessionStatus.SUCCEEDED:
            assert reviews[-1].payload["verdict"] == "accepted"
            assert all(r.payload["verdict"] == "revise" for r in reviews[:-1])


def test_hierarchical_delegates_in_parallel_and_nests(runtime: Runtime, team) -> None:
    sessions = run(runtime, "hierarchical", 6, complexity=0.9)
    depths = Counter()
    for s in sessions:
        evs = events(runtime, s.session_id)
        links = [e for e in evs if e.type == "AgentRelationshipRecorded"]
        depths.update(link.payload["depth"] for link in links)
        assert all(link.payload["relation"] == "delegates_to" for link in links)
        if s.status is SessionStatus.SUCCEEDED:
            assert any(
                e.payload.get("step_id") == "hier/aggregate"
                for e in evs
                if e.type == "StepCompleted"
            )
    assert depths[1] > 0 and depths[2] > 0, "supervisors nest to depth 2 on hard tasks"


def test_swarm_terminates_and_consumes_every_handoff_once(runtime: Runtime, team) -> None:
    sessions = run(runtime, "swarm", 8, complexity=0.6)
    for s in sessions:
        evs = events(runtime, s.session_id)
        handoffs = [e for e in evs if e.type == "HandoffRecorded"]
        keys = [e.idempotency_key for e in handoffs]
        assert len(keys) == len(set(keys))
        done_items = Counter(
            e.payload["step_id"].split("/")[1]
            for e in evs
            if e.type == "StepCompleted" and e.payload["step_id"].startswith("swarm/")
        )
        assert all(n == 1 for n in done_items.values()), "an item is completed at most once"
        terminal = evs[-1]
        if s.status is SessionStatus.SUCCEEDED:
            assert terminal.payload["details"]["termination"] == "goal_met"
            assert terminal.payload["details"]["done"] == terminal.payload["details"]["items"]
        else:
            assert (
                terminal.payload["error.type"].startswith("swarm_")
                or terminal.payload["error.type"]
            )


def test_swarm_stops_when_the_budget_is_spent(runtime: Runtime, team) -> None:
    sessions = run(runtime, "swarm", 3, complexity=1.0, budget_usd=0.002)
    assert all(s.status is SessionStatus.FAILED for s in sessions)
    assert {s.error_type for s in sessions} <= {
        "swarm_budget_spent",
        "budget_exhausted",
        "no_eligible_agent",
    }


def test_auto_chooses_records_reasons_and_runs_the_choice(runtime: Runtime, team) -> None:
    sessions = run(runtime, "auto", 6, complexity=0.2) + run(runtime, "auto", 6, complexity=0.9)
    chosen = []
    for s in sessions:
        evs = events(runtime, s.session_id)
        pick = next(e for e in evs if e.type == "PatternChosen")
        assert pick.payload["reasons"][0].startswith("chose ")
        chosen.append(pick.payload["pattern"])
        assert s.pattern.value == pick.payload["pattern"]
    assert "solo" in chosen[:6] and set(chosen[6:]) & {"hierarchical", "swarm", "pair"}


@pytest.mark.parametrize("pattern", ["pair", "hierarchical", "swarm", "auto"])
def test_rerunning_a_finished_session_calls_no_agent(
    runtime: Runtime, team, store, pattern: str
) -> None:
    (session,) = run(runtime, pattern, 1, complexity=0.8)
    before = [e.type for e in events(runtime, session.session_id)]
    import asyncio

    again = asyncio.run(
        Runtime(store, config=RuntimeConfig(time_scale=0.0)).execute(session.session_id)
    )
    assert again.status is session.status
    assert [e.type for e in events(runtime, session.session_id)] == before


@given(
    complexity=st.floats(0, 1),
    budget=st.one_of(st.none(), st.floats(0.0001, 1)),
    history=st.dictionaries(
        st.sampled_from(
            [PatternName.SOLO, PatternName.PAIR, PatternName.HIERARCHICAL, PatternName.SWARM]
        ),
        st.builds(
            lambda n, k: PatternStats(n, min(n, k)), st.integers(0, 100), st.integers(0, 100)
        ),
    ),
)
def test_choose_pattern_is_total_explained_and_respects_budget(complexity, budget, history) -> None:
    task = Task(prompt="x", capability="code.generate", complexity=complexity)
    choice = choose_pattern(
        task,
        budget_usd=budget,
        history=history,
        available_capabilities=frozenset({"code.review"}),
        solo_cost_usd=0.01,
    )
    assert choice.pattern in (
        PatternName.SOLO,
        PatternName.PAIR,
        PatternName.HIERARCHICAL,
        PatternName.SWARM,
    )
    assert choice.reasons and choice.pattern.value in choice.reasons[0]
    assert choice.scores[choice.pattern.value] == max(choice.scores.values())
    if budget is not None and budget >= 0.01 and budget < 0.025:
        assert choice.pattern is PatternName.SOLO


def test_history_steers_the_choice() -> None:
    task = Task(prompt="x", capability="code.generate", complexity=0.5)
    poor_pair = {PatternName.PAIR: PatternStats(50, 5), PatternName.SOLO: PatternStats(50, 48)}
    assert choose_pattern(task, history=poor_pair).pattern is PatternName.SOLO


def test_a_weak_reviewer_waves_poor_work_through_and_a_strong_one_does_not() -> None:
    from nofx.patterns.pair import acceptance_probability

    assert acceptance_probability(1.0, 0.0) == acceptance_probability(1.0, 1.0) == 1.0
    assert acceptance_probability(0.5, 1.0) == pytest.approx(0.5)  # every flaw is caught
    assert acceptance_probability(0.5, 0.0) == pytest.approx(1.0)  # no flaw is caught
    assert acceptance_probability(0.6, 0.9) < acceptance_probability(0.6, 0.3)


def test_pair_verdicts_reach_the_author_on_its_direct_channel(runtime: Runtime, team) -> None:
    from nofx.bus import MessageBus

    sessions = run(runtime, "pair", 4)
    bus = MessageBus(runtime.store)
    for s in sessions:
        reviews = [e.payload for e in events(runtime, s.session_id) if e.type == "ReviewRecorded"]
        for review in reviews:
            assert review["verdict"] in ("accepted", "revise")  # the simulator answers JSON
            inbox = bus.read(f"direct:{review['author_agent_id']}", limit=1000)
            mine = [m for m in inbox if m.session_id == s.session_id]
            assert any(
                m.body["round"] == review["round"] and m.body["issues"] == review["issues"]
                for m in mine
            )
            assert all(m.sender != review["author_agent_id"] for m in mine)


def test_swarm_peers_share_their_work_through_the_bus_and_context(runtime: Runtime, team) -> None:
    from nofx.bus import MessageBus, SharedContext

    sessions = run(runtime, "swarm", 4, complexity=0.5)
    bus, context = MessageBus(runtime.store), SharedContext(runtime.store)
    for s in (s for s in sessions if s.status is SessionStatus.SUCCEEDED):
        evs = events(runtime, s.session_id)
        items = {
            e.payload["step_id"].split("/")[1]
            for e in evs
            if e.type == "StepCompleted" and e.payload["step_id"].startswith("swarm/")
        }
        topic = bus.read(f"topic:session-{s.session_id}", limit=1000)
        assert {m.body["item"] for m in topic} == items  # every finished item announced once
        for item in items:
            value, _ = context.get(s.session_id, f"swarm/{item}")
            assert value["output"]
        for handoff in (e.payload for e in evs if e.type == "HandoffRecorded"):
            inbox = bus.read(f"direct:{handoff['to_agent_id']}", limit=1000)
            assert any(m.body.get("handoff") and m.body["item"] == handoff["item"] for m in inbox)
