"""The scheduling portfolio: every schedule feasible, never under the bound, never worse than
any of its rules, strong where single rules are weak, within its budget on real traces."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nofx.errors import ValidationError
from nofx.workflows import load_wfformat
from nofx.workflows.model import WorkflowSpec
from nofx.workflows.portfolio import (
    Problem,
    budget_for,
    lower_bound,
    plan,
    rules,
    solve,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "wfcommons"
RULES = ("upward rank", "longest first (LPT)", "critical path with look-ahead", "HEFT insertion")


@st.composite
def problems(draw: st.DrawFn) -> tuple[WorkflowSpec, dict[str, int], dict[str, float]]:
    """Random DAGs over two pools of different sizes, some steps needing memory."""
    n = draw(st.integers(1, 14))
    steps = []
    for i in range(n):
        needs = sorted(
            {f"s{j}" for j in draw(st.lists(st.integers(0, max(0, i - 1)), max_size=3)) if j < i}
        )
        steps.append(
            {
                "id": f"s{i}",
                "capability": "code.generate",
                "needs": needs,
                "pool": draw(st.sampled_from(["default", "gpu"])),
                "resources": {"memory_gb": draw(st.sampled_from([0, 1, 2, 3]))},
                "estimates": {"duration_s": draw(st.integers(0, 30))},
            }
        )
    spec = WorkflowSpec.model_validate({"name": "p", "steps": steps})
    sizes = {"default": draw(st.integers(1, 4)), "gpu": draw(st.integers(1, 3))}
    capacities = draw(st.sampled_from([{}, {"memory_gb": 3.0}, {"memory_gb": 4.0}]))
    return spec, sizes, capacities


def assert_feasible(spec, result, sizes, capacities) -> None:
    slots = {s.step_id: s for s in result.schedule.slots}
    assert set(slots) == {s.id for s in spec.steps}
    for step in spec.steps:
        slot = slots[step.id]
        assert slot.end_s - slot.start_s == pytest.approx(step.estimates.duration_s)
        for dep in step.needs:
            assert slots[dep].end_s <= slot.start_s + 1e-9, f"{step.id} before {dep}"
    timed = [s for s in slots.values() if s.end_s > s.start_s]
    for s in timed:
        now = [o for o in timed if o.start_s <= s.start_s < o.end_s]
        mine = [o for o in now if o.pool == s.pool]
        assert len(mine) <= sizes[s.pool]
        assert len({o.worker for o in mine}) == len(mine), "one worker, two steps at once"
        assert 0 <= s.worker < sizes[s.pool]
        if capacities:
            used = sum(spec.step(o.step_id).resources.get("memory_gb", 0) for o in now)
            assert used <= capacities["memory_gb"] + 1e-9


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=problems())
def test_every_schedule_is_feasible_bounded_and_no_worse_than_any_rule(case) -> None:
    spec, sizes, capacities = case
    result = plan(spec, sizes, capacities, budget_s=0.3)
    assert_feasible(spec, result, sizes, capacities)
    problem = Problem.from_spec(spec, sizes, capacities)
    assert result.makespan_s >= lower_bound(problem) / 1000 - 1e-9
    assert result.makespan_s >= result.lower_bound_s - 1e-9
    for name, rule in rules(problem).items():
        assert result.makespan_s <= rule().makespan / 1000 + 1e-9, name
    for name, makespan in result.members.items():
        assert result.makespan_s <= makespan + 1e-9, name


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=problems())
def test_each_rule_alone_is_feasible(case) -> None:
    spec, sizes, capacities = case
    problem = Problem.from_spec(spec, sizes, capacities)
    for rule in rules(problem).values():
        solution = rule()
        ends = [s + d for s, d in zip(solution.starts, problem.duration, strict=True)]
        for i, preds in enumerate(problem.preds):
            assert all(ends[p] <= solution.starts[i] for p in preds)
        assert solution.makespan >= lower_bound(problem)


def test_a_bin_packing_level_beats_every_list_rule() -> None:
    # 2 workers, 3,3,2,2,2: every list rule packs 3+2+2 / 3+2 = 7; the optimum is 6
    spec = WorkflowSpec.model_validate(
        {
            "name": "bins",
            "steps": [
                {"id": k, "capability": "code.generate", "estimates": {"duration_s": d}}
                for k, d in {"a": 3, "b": 3, "c": 2, "d": 2, "e": 2}.items()
            ],
        }
    )
    result = plan(spec, {"default": 2})
    assert result.members["upward rank"] == 7.0
    assert result.makespan_s == 6.0 and result.optimal and result.lower_bound_s == 6.0


def test_running_steps_keep_their_workers_from_time_zero() -> None:
    spec = WorkflowSpec.model_validate(
        {
            "name": "replan",
            "steps": [
                {"id": "slow", "capability": "code.generate", "estimates": {"duration_s": 1}},
                {"id": "long", "capability": "code.generate", "estimates": {"duration_s": 50}},
                {
                    "id": "after",
                    "capability": "code.generate",
                    "needs": ["long"],
                    "estimates": {"duration_s": 5},
                },
            ],
        }
    )
    result = plan(
        spec, {"default": 1}, running=frozenset({"slow"}), durations_s={"slow": 20}, budget_s=0.2
    )
    first = result.schedule.slots[0]
    assert (first.step_id, first.start_s, first.end_s) == ("slow", 0.0, 20.0)
    assert result.makespan_s == 75.0


def test_finished_steps_are_left_out_of_a_replan() -> None:
    spec = load_wfformat(DATA / "sarek-dirt02-001.json")
    first = spec.steps[0].id
    result = plan(spec, {"default": 4}, done=frozenset({first}), budget_s=0.2)
    assert first not in {s.step_id for s in result.schedule.slots}


def test_a_step_needing_more_than_there_is_is_refused_with_what_to_do() -> None:
    spec = WorkflowSpec.model_validate(
        {
            "name": "big",
            "steps": [
                {"id": "huge", "capability": "code.generate", "resources": {"memory_gb": 64}}
            ],
        }
    )
    with pytest.raises(ValidationError, match="memory_gb") as refused:
        plan(spec, capacities={"memory_gb": 16})
    assert "raise" in (refused.value.hint or "")


def test_the_budget_grows_with_the_dag_and_is_capped() -> None:
    assert budget_for(10) < budget_for(100) < budget_for(200) <= 4.0
    assert budget_for(10_000) == 4.0


@pytest.mark.parametrize("trace", ["blast-chameleon-small-005", "rnaseq-dirt02-001"])
def test_real_traces_are_planned_near_the_bound(trace: str) -> None:
    """Search quality, given CPU: the budget is wall-clock, so the test grants a fixed 8 s
    (about twice the default for these sizes) rather than the default, which a loaded runner
    shares with other work (3.8 s under a load of 12 reached 1.026 of the bound)."""
    spec = load_wfformat(DATA / f"{trace}.json")
    for workers in (3, 8):
        result = plan(spec, {"default": workers}, budget_s=8.0)
        assert result.makespan_s <= 1.02 * result.lower_bound_s
        assert result.makespan_s <= min(result.members.values()) + 1e-9


def test_a_wide_trace_is_planned_within_its_budget_and_improves_on_the_rules() -> None:
    spec = load_wfformat(DATA / "soykb-chameleon-10fastq-10ch-001.json")
    started = time.perf_counter()
    result = plan(spec, {"default": 3})
    elapsed = time.perf_counter() - started
    # the budget is wall time; the slack covers what cannot stop mid-way on a loaded host
    assert result.budget_s <= 5.0 and elapsed <= result.budget_s + 2.5
    rules_only = min(v for k, v in result.members.items() if k in RULES)
    assert result.makespan_s < rules_only  # every rule leaves idle time on this shape


def test_solve_reports_how_it_got_there() -> None:
    problem = Problem.from_spec(load_wfformat(DATA / "montage-chameleon-2mass-005d-001.json"))
    solution, how = solve(problem, budget_s=0.5)
    assert how["method"] in how["members"]  # type: ignore[operator]
    assert solution.makespan >= how["bound"]  # type: ignore[operator]


def test_a_step_of_no_time_goes_to_a_worker_idle_at_that_moment() -> None:
    from nofx.workflows.portfolio import serial_sgs

    spec = WorkflowSpec.model_validate(
        {
            "name": "zero",
            "steps": [
                {"id": "long", "capability": "code.generate", "estimates": {"duration_s": 10}},
                {"id": "short", "capability": "code.generate", "estimates": {"duration_s": 1}},
                {
                    "id": "marker",
                    "capability": "code.generate",
                    "needs": ["short"],
                    "estimates": {"duration_s": 0},
                },
            ],
        }
    )
    problem = Problem.from_spec(spec, {"default": 2})
    solution = serial_sgs(problem, range(problem.n))
    at = {problem.ids[i]: (solution.starts[i], solution.workers[i]) for i in range(problem.n)}
    assert at["marker"][0] == 1000 and at["marker"][1] != at["long"][1]
