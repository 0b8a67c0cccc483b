"""Workflows: validation that points at the problem, real WfCommons traces, analysis properties."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nofx.errors import ValidationError
from nofx.workflows import analyze, find_cycle, load_wfformat, parse_workflow, topological_order
from nofx.workflows.model import WorkflowSpec

DATA = Path(__file__).resolve().parents[1] / "data" / "wfcommons"

FEATURE = """
name: feature
params: {ticket: ABC-1}
steps:
  - id: spec
    capability: plan.decompose
    inputs: {ticket: params.ticket}
    estimates: {duration_s: 30, cost_usd: 0.01}
  - id: code
    capability: code.generate
    needs: [spec]
    inputs: {spec: steps.spec.output}
    estimates: {duration_s: 120, cost_usd: 0.05}
  - id: tests
    capability: test.write
    needs: [spec]
    estimates: {duration_s: 60, cost_usd: 0.02}
  - id: review
    capability: code.review
    needs: [code, tests]
    estimates: {duration_s: 40, cost_usd: 0.01}
"""


def test_a_valid_workflow_is_analysed() -> None:
    spec = parse_workflow(
        FEATURE, known_capabilities={"plan.decompose", "code.generate", "test.write", "code.review"}
    )
    result = analyze(spec, workers=2)
    assert result.critical_path == ["spec", "code", "review"]
    assert result.critical_path_s == 190 and result.total_work_s == 250
    assert result.makespan_lower_bound_s == max(190, 250 / 2)
    assert result.parallelism_profile == [1, 2, 1]
    assert result.estimated_cost_usd == pytest.approx(0.09)
    assert "code" in result.bottlenecks
    assert topological_order(spec)[0] == "spec"


@pytest.mark.parametrize(
    "change, message",
    [
        (
            ("needs: [spec]\n    inputs: {spec", "needs: [spce]\n    inputs: {spec"),
            "unknown step 'spce'.*did you mean 'spec'",
        ),
        (
            ("capability: test.write", "capability: test.wrte"),
            "step 'tests' \\(line 14\\).*'test.wrte'.*did you mean 'test.write'",
        ),
        (
            ("inputs: {spec: steps.spec.output}", "inputs: {spec: steps.tests.output}"),
            "'tests' is not in its needs",
        ),
        (("inputs: {ticket: params.ticket}", "inputs: {ticket: params.nope}"), "does not exist"),
        (
            ("capability: plan.decompose", "capability: plan.decompose\n    needs: [review]"),
            "cycle: .*spec.*review",
        ),
        (
            ("estimates: {duration_s: 60,", "estimates: {duration_s: -1,"),
            "step 'tests' \\(line 14\\) estimates.duration_s",
        ),
        (("id: tests", "id: code"), "unique"),
    ],
)
def test_bad_workflows_are_refused_with_the_step_and_line(change, message) -> None:
    text = FEATURE.replace(*change, 1)
    with pytest.raises(ValidationError, match=message):
        parse_workflow(
            text,
            known_capabilities={"plan.decompose", "code.generate", "test.write", "code.review"},
        )


def test_unparseable_input_is_refused() -> None:
    with pytest.raises(ValidationError, match="not valid"):
        parse_workflow("steps: [", fmt="yaml")
    with pytest.raises(ValidationError, match="not valid JSON"):
        parse_workflow("{", fmt="json")


def test_a_file_that_is_not_wfformat_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "x.json"
    bogus.write_text('{"name": "x", "workflow": {}}')
    with pytest.raises(ValidationError, match="not a WfFormat"):
        load_wfformat(bogus)


@pytest.mark.parametrize(
    "name, tasks, edges, critical, work, levels",
    [
        ("montage-chameleon-2mass-005d-001", 58, 114, 21.385, 221.726, 8),
        ("sarek-dirt02-001", 26, 50, 309.657, 393.226, 10),
    ],
)
def test_real_wfcommons_traces_match_their_published_numbers(
    name, tasks, edges, critical, work, levels
) -> None:
    spec = load_wfformat(DATA / f"{name}.json")
    result = analyze(spec, workers=8)
    assert (result.steps, result.edges) == (tasks, edges)
    assert result.critical_path_s == pytest.approx(critical, abs=1e-3)
    assert result.total_work_s == pytest.approx(work, abs=1e-3)
    assert len(result.parallelism_profile) == levels
    assert result.makespan_lower_bound_s == pytest.approx(max(critical, work / 8), abs=1e-3)
    assert all(step.capability.startswith("wf.") for step in spec.steps)


@st.composite
def random_dags(draw):
    n = draw(st.integers(min_value=1, max_value=9))
    steps = []
    for i in range(n):
        needs = (
            draw(
                st.lists(st.integers(min_value=0, max_value=max(0, i - 1)), max_size=3, unique=True)
            )
            if i
            else []
        )
        steps.append(
            {
                "id": f"s{i}",
                "capability": "code.generate",
                "needs": [f"s{j}" for j in needs],
                "estimates": {"duration_s": draw(st.floats(min_value=0, max_value=100))},
            }
        )
    return WorkflowSpec.model_validate({"name": "r", "steps": steps})


def all_paths(spec: WorkflowSpec) -> list[list[str]]:
    children = {s.id: [c.id for c in spec.steps if s.id in c.needs] for s in spec.steps}
    roots = [s.id for s in spec.steps if not s.needs]

    def walk(node):
        if not children[node]:
            return [[node]]
        return [[node, *rest] for child in children[node] for rest in walk(child)]

    return list(itertools.chain.from_iterable(walk(r) for r in roots))


@given(spec=random_dags(), workers=st.integers(min_value=1, max_value=8))
def test_critical_path_is_the_longest_path_and_bounds_hold(spec, workers) -> None:
    result = analyze(spec, workers=workers)
    durations = {s.id: s.estimates.duration_s for s in spec.steps}
    longest = max(sum(durations[n] for n in path) for path in all_paths(spec))
    assert result.critical_path_s == pytest.approx(longest)
    assert sum(durations[n] for n in result.critical_path) == pytest.approx(longest)
    assert result.makespan_lower_bound_s >= result.critical_path_s - 1e-9
    assert result.makespan_lower_bound_s >= result.total_work_s / workers - 1e-9
    assert sum(result.parallelism_profile) == result.steps
    order = topological_order(spec)
    assert sorted(order) == sorted(s.id for s in spec.steps)
    position = {n: i for i, n in enumerate(order)}
    assert all(position[d] < position[s.id] for s in spec.steps for d in s.needs)
    assert find_cycle(spec) is None


def test_analyze_needs_a_worker() -> None:
    with pytest.raises(ValueError):
        analyze(parse_workflow(FEATURE), workers=0)


def test_analyze_over_http_and_from_the_cli(store, registry, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from nofx.api.app import create_app
    from nofx.cli import app as cli
    from nofx.domain import AgentSpec

    spec = {
        "name": "w",
        "steps": [{"id": "a", "capability": "code.generate", "estimates": {"duration_s": 5}}],
    }
    with TestClient(create_app(store=store, auth_required=False)) as client:
        refused = client.post("/api/v1/workflows/analyze", json=spec)
        assert refused.status_code == 422 and "no agent offers" in refused.json()["detail"]
        registry.register(AgentSpec(name="c", capabilities=[{"name": "code.generate"}]))
        body = client.post("/api/v1/workflows/analyze", json=spec, params={"workers": 2}).json()
        assert body["critical_path"] == ["a"] and body["makespan_lower_bound_s"] == 5
    result = CliRunner().invoke(
        cli, ["workflows", "analyze", str(DATA / "sarek-dirt02-001.json"), "--workers", "2"]
    )
    assert result.exit_code == 0 and "309.7 s" in result.output
    (tmp_path / "bad.yaml").write_text(
        "name: x\nsteps:\n  - id: a\n    capability: code.generate\n    needs: [b]\n"
    )
    bad = CliRunner().invoke(cli, ["workflows", "analyze", str(tmp_path / "bad.yaml")])
    assert bad.exit_code == 2 and "unknown step 'b'" in bad.output


def test_every_template_loads_validates_against_the_demo_fleet_and_has_parallelism() -> None:
    from nofx.fleet import DEMO_CAPABILITIES
    from nofx.workflows import list_templates, load_template, template_parameters

    names = list_templates()
    assert {"feature", "bugfix", "data_pipeline", "research_report", "incident_response"} <= set(
        names
    )
    for name in names:
        params = {p: f"value-{p}" for p in template_parameters(name)}
        spec = load_template(name, known_capabilities=set(DEMO_CAPABILITIES), **params)
        assert all("{{" not in (s.prompt + spec.name) for s in spec.steps)
        result = analyze(spec, workers=2)
        assert result.critical_path_s <= result.total_work_s
    assert analyze(load_template("research_report", topic="x")).max_parallelism == 3


def test_template_errors_name_what_is_missing() -> None:
    from nofx.errors import NotFoundError
    from nofx.workflows import load_template

    with pytest.raises(ValidationError, match="needs parameters: repo"):
        load_template("feature", feature="x")
    with pytest.raises(NotFoundError, match="known: bugfix"):
        load_template("nope")


@st.composite
def pooled_dags(draw):
    spec = draw(random_dags())
    steps = []
    for s in spec.steps:
        steps.append(
            {
                **s.model_dump(),
                "pool": draw(st.sampled_from(["default", "gpu"])),
                "estimates": {
                    **s.estimates.model_dump(),
                    "cost_usd": draw(st.floats(min_value=0, max_value=1)),
                },
            }
        )
    return WorkflowSpec.model_validate({"name": "p", "steps": steps})


@given(
    spec=pooled_dags(),
    default=st.integers(min_value=1, max_value=4),
    gpu=st.integers(min_value=1, max_value=3),
    budget=st.one_of(st.none(), st.floats(min_value=0, max_value=3)),
)
def test_schedule_respects_dependencies_limits_bounds_and_budget(
    spec, default, gpu, budget
) -> None:
    from nofx.workflows import schedule

    plan = schedule(spec, {"default": default, "gpu": gpu}, budget_usd=budget)
    slots = {s.step_id: s for s in plan.slots}
    for step in spec.steps:
        if step.id in slots:
            assert all(d in slots for d in step.needs), "a scheduled step's inputs were scheduled"
            assert all(slots[d].end_s <= slots[step.id].start_s + 1e-9 for d in step.needs)
        else:
            assert step.id in plan.unscheduled
            assert all(c.id in plan.unscheduled for c in spec.steps if step.id in c.needs)
    for pool, limit in (("default", default), ("gpu", gpu)):
        mine = [s for s in plan.slots if s.pool == pool]
        for s in mine:
            overlapping = sum(1 for o in mine if o.start_s <= s.start_s < o.end_s)
            assert overlapping <= limit
            assert 0 <= s.worker < limit
    if budget is not None:
        assert plan.cost_usd <= budget + 1e-9
    if not plan.unscheduled:
        assert plan.makespan_s >= analyze(spec, workers=default + gpu).critical_path_s - 1e-9
        assert plan.makespan_s >= spec_total(spec) / (default + gpu) - 1e-9


def spec_total(spec: WorkflowSpec) -> float:
    return sum(s.estimates.duration_s for s in spec.steps)


@given(spec=random_dags())
def test_with_enough_workers_the_schedule_is_the_critical_path(spec) -> None:
    from nofx.workflows import schedule

    assert schedule(spec, {"default": len(spec.steps)}).makespan_s == pytest.approx(
        analyze(spec).critical_path_s
    )


def test_real_traces_schedule_close_to_the_lower_bound() -> None:
    from nofx.workflows import schedule

    for name in ("montage-chameleon-2mass-005d-001", "sarek-dirt02-001"):
        spec = load_wfformat(DATA / f"{name}.json")
        for workers in (1, 2, 4, 8):
            bound = analyze(spec, workers=workers).makespan_lower_bound_s
            makespan = schedule(spec, {"default": workers}).makespan_s
            assert bound - 1e-6 <= makespan <= 1.5 * bound


def workflow_request(spec_text: str = FEATURE):
    import yaml

    from nofx.domain import SessionRequest, Task

    return SessionRequest(
        task=Task(prompt="ship the feature", capability="code.generate"),
        pattern="workflow",
        workflow=yaml.safe_load(spec_text),
    )


@pytest.fixture
def team(registry):
    from nofx.domain import AgentSpec

    caps = ("plan.decompose", "code.generate", "test.write", "code.review")
    return [
        registry.register(
            AgentSpec(
                name=f"w{i}",
                capabilities=[{"name": c, "proficiency": 3 + i % 3} for c in caps],
                provider={
                    "config": {
                        "skill": dict.fromkeys(caps, 0.97),
                        "error_rate": 0.0,
                        "rate_limit_rate": 0.0,
                    }
                },
            )
        )
        for i in range(3)
    ]


async def test_a_workflow_runs_in_dependency_order_and_resumes_without_repeating(
    runtime, team, store
) -> None:
    from nofx.runtime import Runtime, RuntimeConfig

    session = runtime.sessions.submit(workflow_request())
    done = await runtime.run_session(session.session_id)
    events = runtime.sessions.events(session.session_id)
    completed = {e.payload["step_id"]: e for e in events if e.type == "StepCompleted"}
    if done.status.value == "succeeded":
        assert set(completed) == {"wf/spec", "wf/code", "wf/tests", "wf/review"}
        order = [e.payload["step_id"] for e in events if e.type == "StepCompleted"]
        assert order.index("wf/spec") < order.index("wf/code") < order.index("wf/review")
        assert order.index("wf/tests") < order.index("wf/review")
        # a step starts only after every step it needs has completed
        seqs = {(e.type, e.payload.get("step_id")): e.seq for e in events}
        assert seqs[("StepStarted", "wf/code")] > seqs[("StepCompleted", "wf/spec")]
        assert seqs[("StepStarted", "wf/review")] > seqs[("StepCompleted", "wf/tests")]
    before = [e.type for e in events]
    again = await Runtime(store, config=RuntimeConfig(time_scale=0.0)).execute(session.session_id)
    assert again.status is done.status
    assert [e.type for e in runtime.sessions.events(session.session_id)] == before


async def test_a_failing_step_skips_its_dependants_and_names_itself(store, registry) -> None:
    from nofx.domain import AgentSpec
    from nofx.runtime import Runtime, RuntimeConfig

    good = ("plan.decompose", "test.write", "code.review")
    registry.register(
        AgentSpec(
            name="ok",
            capabilities=[{"name": c} for c in good],
            provider={
                "config": {
                    "skill": dict.fromkeys(good, 1.0),
                    "error_rate": 0.0,
                    "rate_limit_rate": 0.0,
                    "latency_median_ms": 10,
                }
            },
        )
    )
    registry.register(
        AgentSpec(
            name="broken",
            capabilities=[{"name": "code.generate"}],
            provider={"config": {"dark_after_calls": 0}},
        )
    )
    runtime = Runtime(store, registry, config=RuntimeConfig(time_scale=0.0))
    session = runtime.sessions.submit(workflow_request())
    done = await runtime.run_session(session.session_id)
    assert done.status.value == "failed" and done.error_type == "workflow_step_failed"
    events = runtime.sessions.events(session.session_id)
    skipped = [e.payload["step_id"] for e in events if e.type == "StepSkipped"]
    assert skipped == ["wf/review"]
    assert {e.payload["step_id"] for e in events if e.type == "StepCompleted"} == {
        "wf/spec",
        "wf/tests",
    }
    # a failed run still records its planned and executed makespan
    recorded = [e.payload for e in events if e.type == "WorkflowMakespanRecorded"]
    assert len(recorded) == 1 and recorded[0]["planned_makespan_s"] > 0
    replans = [e.payload["reason"] for e in events if e.type == "WorkflowReplanned"]
    assert all("'code' failed" in r for r in replans)


def test_workflow_sessions_are_validated_at_submit(runtime, team) -> None:
    from pydantic import ValidationError as PydanticValidationError

    from nofx.domain import SessionRequest, Task

    with pytest.raises(ValidationError, match=r"did you mean 'test\.write'"):
        runtime.sessions.submit(
            workflow_request(FEATURE.replace("capability: test.write", "capability: test.wrte"))
        )
    with pytest.raises(PydanticValidationError, match="go together"):
        SessionRequest(task=Task(prompt="x", capability="code.generate"), pattern="workflow")


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(spec=random_dags())
def test_replaying_a_workflows_events_rebuilds_its_state_and_calls_no_agent(
    spec, store, team
) -> None:
    """Any DAG, run for real: the fold of its events is the projected row, and executing the
    finished session again writes nothing and calls no agent."""
    import asyncio

    from nofx.domain import PatternName, SessionRequest, Task
    from nofx.runtime import Runtime, RuntimeConfig
    from nofx.sessions import replay
    from nofx.store.schema import sessions as sessions_table

    runtime = Runtime(store, config=RuntimeConfig(time_scale=0.0, seed=3))
    session = runtime.sessions.submit(
        SessionRequest(
            task=Task(prompt="random dag", capability="code.generate"),
            pattern=PatternName.WORKFLOW,
            workflow=spec.model_dump(mode="json"),
        )
    )
    done = asyncio.run(runtime.run_session(session.session_id))
    events = runtime.sessions.events(session.session_id)
    rebuilt = replay(events)
    with store.engine.connect() as conn:
        row = dict(
            conn.execute(
                sessions_table.select().where(sessions_table.c.session_id == session.session_id)
            )
            .first()
            ._mapping
        )
    for key in ("status", "attempts", "agent_id", "cost_usd", "input_tokens", "output_tokens"):
        assert rebuilt[key] == row[key], key
    completed = {e.payload["step_id"] for e in events if e.type == "StepCompleted"}
    if done.status.value == "succeeded":
        assert completed == {f"wf/{s.id}" for s in spec.steps}
    calls = Counter()

    class Counting:
        async def invoke(self, agent, call):  # pragma: no cover - must not be called
            calls["agent"] += 1
            raise AssertionError("a finished workflow called an agent on replay")

    from nofx.agents import ProviderSet
    from nofx.domain import ProviderKind

    again = Runtime(
        store,
        providers=ProviderSet({ProviderKind.SIMULATED: Counting()}),
        config=RuntimeConfig(time_scale=0.0),
    )
    asyncio.run(again.execute(session.session_id))
    assert calls["agent"] == 0
    assert len(runtime.sessions.events(session.session_id)) == len(events)
