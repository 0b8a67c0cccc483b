"""Patterns with agents that answer like real ones: the reviewer's JSON verdict is parsed (and
a garbled one is a failed review with the reason), a revision carries the review, workers get
the plan's subtasks, swarm items come from the task; and a workflow step with a pattern runs it."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nofx.agents import AgentResult, ProviderSet
from nofx.domain import AgentSpec, ProviderKind, SessionRequest, Task
from nofx.patterns.hierarchical import parse_subtasks
from nofx.patterns.pair import Verdict, parse_verdict, revision_prompt
from nofx.patterns.swarm import MAX_ITEMS, work_items
from nofx.runtime import Runtime, RuntimeConfig
from nofx.workflows import load_template, template_parameters

CAPS = ("code.generate", "code.review", "plan.decompose", "research.search", "test.write")


# every test here registers python-kind agents: the operator policy must allow them
pytestmark = pytest.mark.usefixtures("local_agents_policy")


class Scripted:
    """A python-kind provider that answers like an LLM would, from the prompt alone (it never
    reads the simulator's context hints), and keeps every prompt it got."""

    def __init__(self, review_answers: list[str]) -> None:
        self.review_answers = review_answers
        self.prompts: list[tuple[str, str]] = []

    async def invoke(self, agent, call):  # type: ignore[no-untyped-def]
        self.prompts.append((call.capability, call.prompt))
        if call.prompt.startswith("Review this work"):
            text = self.review_answers.pop(0) if self.review_answers else '{"verdict": "accept"}'
        elif call.prompt.startswith("Decompose the task"):
            text = "Here is the plan:\n1. check the logs\n2. bisect the commits\n3. read the diff"
        else:
            text = f"work for: {call.prompt[:40]}"
        return AgentResult(
            output=text, input_tokens=5, output_tokens=5, cost_usd=0.0, latency_ms=10
        )


def session(store, registry, provider, pattern: str, prompt: str, **kw):  # type: ignore[no-untyped-def]
    for i in range(2):
        registry.register(
            AgentSpec(
                name=f"a{i}",
                capabilities=[{"name": c, "proficiency": 4} for c in CAPS],
                provider={
                    "kind": "python",
                    "config": {"callable": "tests.patterns.test_real_formats:Scripted"},
                },
            )
        )
    runtime = Runtime(
        store,
        registry,
        providers=ProviderSet({ProviderKind.PYTHON: provider}),
        config=RuntimeConfig(time_scale=0.0),
    )
    s = runtime.sessions.submit(
        SessionRequest(task=Task(prompt=prompt, capability="code.generate"), pattern=pattern, **kw)
    )
    asyncio.run(runtime.run_session(s.session_id))
    return runtime.sessions.get(s.session_id), runtime.sessions.events(s.session_id)


def test_verdicts_are_parsed_and_garbage_is_a_failed_review_with_the_reason() -> None:
    fenced = 'Sure.\n```json\n{"verdict": "revise", "issues": ["no test"], "summary": "s"}\n```'
    assert parse_verdict(fenced) == Verdict(False, ["no test"], "s")
    assert parse_verdict('{"verdict": "accept"}').accepted
    for garbage in ("LGTM!", '{"verdict": "maybe"}', '{"verdict": "accept", "issues": "x"}'):
        verdict = parse_verdict(garbage)
        assert not verdict.accepted and verdict.error and verdict.label == "unparseable"
    prompt = revision_prompt("fix it", "old work", Verdict(False, ["no test"], "weak"), 1)
    assert "old work" in prompt and "no test" in prompt and "weak" in prompt


def test_subtasks_and_items_come_from_the_text() -> None:
    assert parse_subtasks('{"subtasks": ["a", "b"]}') == ["a", "b"]
    assert parse_subtasks("plan:\n1. a\n2) b\n- c\nnot an item") == ["a", "b", "c"]
    assert parse_subtasks("no list here") == []
    assert work_items("translate:\n- intro\n- methods", 0.5) == ["intro", "methods"]
    assert work_items(json.dumps({"items": ["x", "y", "z"]}), 0.5) == ["x", "y", "z"]
    assert len(work_items("one blob of work", 0.5)) == 4  # 2 + round(0.5 * 4) parts


def test_a_garbled_review_fails_the_round_and_the_revision_carries_the_review(
    store, registry
) -> None:
    provider = Scripted(
        [
            "looks fine to me",  # not JSON: a failed review, with the reason
            '{"verdict": "revise", "issues": ["handle the empty list"], "summary": "close"}',
            '{"verdict": "accept", "issues": [], "summary": "good"}',
        ]
    )
    done, events = session(store, registry, provider, "pair", "sort a list")
    assert done.status.value == "succeeded"
    reviews = [e.payload for e in events if e.type == "ReviewRecorded"]
    assert [r["verdict"] for r in reviews] == ["unparseable", "revise", "accepted"]
    assert "no JSON object" in reviews[0]["reason"]
    authors = [p for c, p in provider.prompts if c == "code.generate"]
    assert "could not be read" in authors[1]
    assert "handle the empty list" in authors[2] and "close" in authors[2]
    # ReviewRecorded is the pair's relationship (reviewer -> author) in agent_relationships
    assert all(r["reviewer_agent_id"] != r["author_agent_id"] for r in reviews)
    assert not [e for e in events if e.type == "AgentRelationshipRecorded"]


def test_hierarchical_workers_get_the_plans_subtasks(store, registry) -> None:
    provider = Scripted([])
    done, events = session(store, registry, provider, "hierarchical", "why is prod slow")
    assert done.status.value == "succeeded"
    workers = [
        p for c, p in provider.prompts if c == "code.generate" and not p.startswith("Combine")
    ]
    assert sorted(w.split("\n")[0] for w in workers) == [
        "bisect the commits",
        "check the logs",
        "read the diff",
    ]
    links = [e.payload for e in events if e.type == "AgentRelationshipRecorded"]
    assert sorted(link["subtask"] for link in links) == [
        "bisect the commits",
        "check the logs",
        "read the diff",
    ]


def test_swarm_items_come_from_the_task(store, registry) -> None:
    provider = Scripted([])
    done, _ = session(store, registry, provider, "swarm", "write docs for:\n- api\n- cli\n- sdk")
    assert done.status.value == "succeeded"
    firsts = sorted(p.split("\n")[0] for _, p in provider.prompts if not p.startswith("Combine"))
    assert firsts == ["api", "cli", "sdk"]


def test_a_bugfix_workflow_runs_its_pair_and_hierarchical_steps(store, registry) -> None:
    provider = Scripted(['{"verdict": "revise", "issues": ["edge"], "summary": "s"}'])
    spec = load_template(
        "bugfix", **dict.fromkeys(template_parameters("bugfix"), "login fails on empty password")
    )
    done, events = session(
        store,
        registry,
        provider,
        "workflow",
        "fix the login bug",
        workflow=spec.model_dump(mode="json"),
    )
    assert done.status.value == "succeeded", events[-1].payload
    links = [e.payload for e in events if e.type == "AgentRelationshipRecorded"]
    assert {(link["relation"], link["step_id"].split("/")[1]) for link in links} == {
        ("delegates_to", "triage")
    }
    reviews = [e.payload for e in events if e.type == "ReviewRecorded"]  # the pair's links
    assert [r["verdict"] for r in reviews] == ["revise", "accepted"]
    assert {r["step_id"].split("/")[1] for r in reviews} == {"fix"}
    completed = {e.payload["step_id"] for e in events if e.type == "StepCompleted"}
    assert {"wf/triage/plan", "wf/fix/author/2", "wf/fix/review/2", "wf/review"} <= completed
    from nofx.bus import MessageBus

    inbox = [
        m
        for r in reviews
        for m in MessageBus(store).read(f"direct:{r['author_agent_id']}", limit=100)
        if m.session_id == done.session_id
    ]
    assert inbox, "the verdict reached the author"


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=400) | st.from_regex(r"[\[\]{}\":,a-z0-9 \n.-]{0,200}"))
def test_parsing_any_answer_never_raises_and_stays_bounded(text: str) -> None:
    verdict = parse_verdict(text)
    assert verdict.accepted or verdict.error or verdict.label == "revise"
    assert not (verdict.accepted and verdict.error)
    assert len(parse_subtasks(text)) <= 8
    items = work_items(text, 0.5)
    assert len(items) <= MAX_ITEMS
    if "{" not in text:  # no JSON: the task's own list, or the text split in 2 + 0.5 * 4 parts
        listed = parse_subtasks(text, limit=MAX_ITEMS)
        assert items == (listed or [f"{text} (part {i + 1} of 4)" for i in range(4)])


def test_a_hostile_answer_is_parsed_in_bounded_time() -> None:
    import time

    started = time.perf_counter()
    for hostile in ("{" * 300_000, '{"a": ' + "[" * 100_000, "[" * 100_000):
        assert parse_verdict(hostile).error
        assert parse_subtasks(hostile) == []
        assert work_items(hostile, 0.0) == [f"{hostile} (part {i + 1} of 2)" for i in range(2)]
    assert time.perf_counter() - started < 2.0
