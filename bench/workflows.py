"""Workflow planning on every real WfCommons trace: planned makespan over the best known.

For each trace and K in {2, 3, 4, 6, 8, 12, 16} identical workers, the planner (the
scheduling portfolio, nofx.workflows.portfolio, with the budget it derives from the DAG) is
compared with an independent reference: plain CP-SAT run once for 60 s per case and stored
with its proven bound (bench/reference/wfcommons_cpsat60.json, from
bench.workflows_reference). Best known = the better of the two; the proven bound = the
larger of the two bounds. Cases whose optimum is the critical path (any rank rule solves
them) are reported apart from the rest. Durations are the traces' measured runtimes.
"""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.report import parse_args, show, write
from nofx.workflows import analyze, load_wfformat, schedule
from nofx.workflows.model import WorkflowSpec
from nofx.workflows.optimal import best_schedule
from nofx.workflows.portfolio import plan
from nofx.workflows.templates import list_templates, load_template, template_parameters

TRACES = Path(__file__).resolve().parents[1] / "tests" / "data" / "wfcommons"
REFERENCE = Path(__file__).resolve().parent / "reference" / "wfcommons_cpsat60.json"
WORKERS = (2, 3, 4, 6, 8, 12, 16)


def load_reference() -> dict[tuple[str, int], dict[str, Any]]:
    """The stored CP-SAT reference by (trace, K); empty when it has not been generated."""
    if not REFERENCE.exists():
        return {}
    data = json.loads(REFERENCE.read_text())
    return {
        (trace, int(row["workers"])): row for trace, rows in data["traces"].items() for row in rows
    }


def planning_rows(quick: bool) -> list[dict[str, Any]]:
    """The planner on every trace and K against the stored reference."""
    reference = load_reference()
    rows = []
    for path in sorted(TRACES.glob("*.json")):
        spec = load_wfformat(path)
        for k in (3, 8) if quick else WORKERS:
            started = time.perf_counter()
            result = plan(spec, {"default": k})
            elapsed = time.perf_counter() - started
            listed = schedule(spec, {"default": k}).makespan_s
            critical = analyze(spec, workers=k).critical_path_s
            ref = reference.get((path.stem, k))
            ref_best = ref["best_makespan_ms"] / 1000 if ref else None
            bound = max(result.lower_bound_s, ref["proven_bound_ms"] / 1000 if ref else 0.0)
            best_known = min(result.makespan_s, ref_best) if ref_best else result.makespan_s
            rows.append(
                {
                    "trace": path.stem,
                    "steps": len(spec.steps),
                    "workers": k,
                    "planned_s": round(result.makespan_s, 3),
                    "reference_s": ref_best,
                    "best_known_s": round(best_known, 3),
                    "proven_bound_s": round(bound, 3),
                    "planned_over_best_known": result.makespan_s / best_known,
                    "planned_over_proven_bound": result.makespan_s / bound,
                    "reference_over_best_known": ref_best / best_known if ref_best else None,
                    "upward_rank_over_best_known": listed / best_known,
                    "critical_path_bound": best_known <= critical + 1e-3,
                    "method": result.method,
                    "solve_s": round(elapsed, 3),
                    "budget_s": round(result.budget_s, 3),
                }
            )
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    if not rows:
        return {"cases": 0}
    return {
        "cases": len(rows),
        "max_planned_over_best_known": max(r["planned_over_best_known"] for r in rows),
        "mean_planned_over_best_known": sum(r["planned_over_best_known"] for r in rows) / len(rows),
        "max_planned_over_proven_bound": max(r["planned_over_proven_bound"] for r in rows),
        "max_upward_rank_over_best_known": max(r["upward_rank_over_best_known"] for r in rows),
        "max_solve_s": max(r["solve_s"] for r in rows),
        "within_1_02_of_best_known": sum(r["planned_over_best_known"] <= 1.02 for r in rows),
    }


def layered_dag(steps: int, seed: int = 3) -> WorkflowSpec:
    """A random layered DAG (each step needs 1-3 steps of the layer before) for timing."""
    rng = random.Random(seed)
    width = max(1, int(steps**0.5))
    specs: list[dict] = []
    for i in range(steps):
        layer = i // width
        before = range((layer - 1) * width, layer * width) if layer else range(0)
        needs = (
            sorted({f"s{j}" for j in rng.sample(list(before), min(len(before), rng.randint(1, 3)))})
            if layer
            else []
        )
        specs.append(
            {
                "id": f"s{i}",
                "capability": "code.generate",
                "needs": needs,
                "estimates": {"duration_s": rng.uniform(1, 60)},
            }
        )
    return WorkflowSpec.model_validate({"name": "layered", "steps": specs})


def executor_overhead_ms_per_step(steps: int) -> float:
    """Wall time per step of a workflow of independent steps with zero-latency agents."""
    from nofx.domain import AgentSpec, PatternName, SessionRequest, Task
    from nofx.registry import AgentRegistry
    from nofx.runtime import Runtime, RuntimeConfig
    from nofx.store import EventStore

    with tempfile.TemporaryDirectory() as tmp:
        store = EventStore(f"sqlite:///{Path(tmp) / 'e.db'}")
        registry = AgentRegistry(store)
        registry.register(
            AgentSpec(
                name="instant",
                capabilities=[{"name": "code.generate", "proficiency": 5}],
                provider={
                    "config": {
                        "latency_median_ms": 1,
                        "error_rate": 0.0,
                        "rate_limit_rate": 0.0,
                        "skill": {"code.generate": 1.0},
                    }
                },
                max_concurrency=10_000,
            )
        )
        runtime = Runtime(store, registry, config=RuntimeConfig(time_scale=0.0))
        flow = {
            "name": "flat",
            "steps": [{"id": f"s{i}", "capability": "code.generate"} for i in range(steps)],
        }
        session = runtime.sessions.submit(
            SessionRequest(
                task=Task(prompt="flat", capability="code.generate"),
                pattern=PatternName.WORKFLOW,
                workflow=flow,
            )
        )
        started = time.perf_counter()
        asyncio.run(runtime.run_session(session.session_id))
        elapsed = time.perf_counter() - started
        store.dispose()
    return elapsed * 1000 / steps


def executed_rows(quick: bool) -> list[dict[str, Any]]:
    """Each trace run by the executor with agents that take exactly each step's estimate
    (zero latency of their own), K workers: executed makespan over the planned one."""
    from nofx.domain import AgentSpec, NewEvent, PatternName, SessionRequest, Task
    from nofx.registry import AgentRegistry
    from nofx.runtime import Runtime, RuntimeConfig
    from nofx.store import EventStore
    from nofx.workflows.adapt import Plan, stream_id

    rows = []
    paths = sorted(TRACES.glob("*.json"))
    cases = [(p, 4) for p in paths[:2]] if quick else [(p, k) for p in paths for k in (2, 4, 8)]
    for path, workers in cases:
        spec = load_wfformat(path)
        caps = sorted({s.capability for s in spec.steps})
        with tempfile.TemporaryDirectory() as tmp:
            store = EventStore(f"sqlite:///{Path(tmp) / 'e.db'}")
            registry = AgentRegistry(store)
            registry.register(
                AgentSpec(
                    name="exact",
                    capabilities=[{"name": c, "proficiency": 5} for c in caps],
                    provider={
                        "config": {
                            "skill": dict.fromkeys(caps, 1.0),
                            "error_rate": 0.0,
                            "rate_limit_rate": 0.0,
                            "latency_from_estimate": True,
                        }
                    },
                    max_concurrency=10_000,
                )
            )
            # traces have steps of many minutes: no call timeout gets in their way
            config = RuntimeConfig(time_scale=0.0, call_timeout_s=86_400)
            runtime = Runtime(store, registry, config=config)
            session = runtime.sessions.submit(
                SessionRequest(
                    task=Task(prompt=spec.name, capability=caps[0]),
                    pattern=PatternName.WORKFLOW,
                    workflow=spec.model_dump(mode="json"),
                )
            )
            if workers != 4:  # the pool's size, set as a user would (POST /workflows/adapt)
                plan_k = Plan(spec=spec, pool_limits={"default": workers})
                store.append(
                    stream_id(session.session_id),
                    "workflow",
                    session.tenant_id,
                    [
                        NewEvent(
                            type="WorkflowAdapted",
                            payload={"plan": plan_k.model_dump(mode="json"), "by": "bench"},
                        )
                    ],
                )
            started = time.perf_counter()
            asyncio.run(runtime.run_session(session.session_id))
            wall = time.perf_counter() - started
            events = runtime.sessions.events(session.session_id)
            store.dispose()
        recorded = next(e.payload for e in events if e.type == "WorkflowMakespanRecorded")
        rows.append(
            {
                "trace": path.stem,
                "workers": workers,
                "planned_s": recorded["planned_makespan_s"],
                "executed_s": recorded["executed_makespan_s"],
                "executed_over_planned": recorded["executed_over_planned"],
                "replans": recorded["replans"],
                "run_wall_s": round(wall, 3),
            }
        )
    return rows


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    rows = planning_rows(args.quick)
    show(
        "planner on real traces against the best known (CP-SAT 60 s reference)",
        [
            {k: v for k, v in r.items() if k not in ("steps", "reference_over_best_known")}
            for r in rows
        ],
    )
    hard = [r for r in rows if not r["critical_path_bound"]]
    easy = [r for r in rows if r["critical_path_bound"]]
    show(
        "summary: cases bound by the critical path vs the rest",
        [
            {"cases": "not critical-path bound", **summary(hard)},
            {"cases": "critical-path bound", **summary(easy)},
        ],
    )

    executed = executed_rows(args.quick)
    show("executor: planned vs executed makespan (exact-duration agents)", executed)

    # planning time for a 200-step DAG (a layered random DAG and the 197-step rnaseq trace)
    timing: list[dict[str, Any]] = []
    for name, spec in (
        ("layered 200", layered_dag(200)),
        ("rnaseq-dirt02-001", load_wfformat(TRACES / "rnaseq-dirt02-001.json")),
    ):
        for k in (4, 12):
            started = time.perf_counter()
            result = plan(spec, {"default": k})
            timing.append(
                {
                    "dag": name,
                    "steps": len(spec.steps),
                    "workers": k,
                    "plan_s": time.perf_counter() - started,
                    "budget_s": result.budget_s,
                    "method": result.method,
                    "over_bound": result.makespan_s / result.lower_bound_s,
                }
            )
    show("planning time (budget scales with the DAG)", timing)

    sequential = []
    sources = [
        (
            f"template:{t}",
            load_template(t, known_capabilities=None, **dict.fromkeys(template_parameters(t), "x")),
        )
        for t in list_templates()
    ]
    if not args.quick:
        sources += [(f"trace:{p.stem}", load_wfformat(p)) for p in sorted(TRACES.glob("*.json"))]
    for name, spec in sources:
        total = analyze(spec).total_work_s
        planned = best_schedule(spec, 4).makespan_s
        sequential.append(
            {
                "workflow": name,
                "sequential_s": total,
                "planned_4_workers_s": planned,
                "makespan_reduction_vs_sequential": 1 - planned / total if total else 0.0,
            }
        )
    show("planned makespan against running the steps one after another (4 workers)", sequential)

    big = layered_dag(10_000 if not args.quick else 2_000)
    started = time.perf_counter()
    schedule(big, {"default": 16})
    schedule_ms = (time.perf_counter() - started) * 1000
    overhead = executor_overhead_ms_per_step(200 if args.quick else 1000)
    show(
        "scale",
        [
            {
                "steps": len(big.steps),
                "schedule_ms": schedule_ms,
                "executor_overhead_ms_per_step": overhead,
            }
        ],
    )

    write(
        args.json,
        "workflows",
        args.quick,
        {
            "reference": str(REFERENCE.relative_to(REFERENCE.parents[2])),
            "not_critical_path_bound": summary(hard),
            "critical_path_bound": summary(easy),
            "max_planned_over_best_known": max(r["planned_over_best_known"] for r in rows),
            "max_plan_s_200_steps": max(t["plan_s"] for t in timing),
            "max_executed_over_planned": max(r["executed_over_planned"] for r in executed),
            "executed": executed,
            "planning_time": timing,
            "planning_rows": rows,
            "makespan_reduction_vs_sequential": sequential,
            f"schedule_ms_{len(big.steps)}_steps": schedule_ms,
            "executor_overhead_ms_per_step": overhead,
        },
    )


if __name__ == "__main__":
    main()
