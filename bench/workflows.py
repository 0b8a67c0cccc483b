"""Workflow scheduling quality on real WfCommons traces: makespan against the lower bound.

For each trace and worker count K, the list scheduler's makespan (upward-rank
priority) is compared with max(critical path, total work / K), which no
schedule can beat, and with a FIFO list scheduler (declaration order) as the
naive peer. Durations are the traces' measured runtimes.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from pathlib import Path

from bench.report import parse_args, show, write
from nofx.workflows import analyze, load_wfformat, schedule
from nofx.workflows.model import WorkflowSpec
from nofx.workflows.optimal import best_schedule, solve_exact
from nofx.workflows.templates import list_templates, load_template, template_parameters

TRACES = Path(__file__).resolve().parents[1] / "tests" / "data" / "wfcommons"


def fifo(spec: WorkflowSpec, workers: int) -> float:
    """The naive peer: steps in declaration order, each on the worker free soonest."""
    finish: dict[str, float] = {}
    free = [0.0] * workers
    for step in spec.steps:  # WfFormat lists parents before children
        ready = max((finish[d] for d in step.needs), default=0.0)
        worker = min(range(workers), key=lambda w: max(free[w], ready))
        start = max(free[worker], ready)
        finish[step.id] = free[worker] = start + step.estimates.duration_s
    return max(finish.values())


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


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    workers_list = (1, 2, 4, 8) if args.quick else (1, 2, 4, 8, 16, 32)
    rows = []
    for path in sorted(TRACES.glob("*.json")):
        spec = load_wfformat(path)
        for k in workers_list:
            start = time.perf_counter()
            plan = schedule(spec, {"default": k})
            elapsed_ms = (time.perf_counter() - start) * 1000
            bound = analyze(spec, workers=k).makespan_lower_bound_s
            naive = fifo(spec, k)
            rows.append(
                {
                    "trace": path.stem,
                    "workers": k,
                    "makespan_s": plan.makespan_s,
                    "lower_bound_s": bound,
                    "ratio_to_bound": plan.makespan_s / bound if bound else 1.0,
                    "makespan_over_lower_bound": plan.makespan_s / bound if bound else 1.0,
                    "fifo_makespan_s": naive,
                    "fifo_ratio_to_bound": naive / bound if bound else 1.0,
                    "schedule_ms": elapsed_ms,
                }
            )
    show("list scheduling on real traces (measured runtimes)", rows)

    # against the optimum (OR-tools CP-SAT; its proven bound when the time limit stops it)
    limit = 2.0 if args.quick else 10.0
    optimal_rows = []
    for path in sorted(TRACES.glob("*.json")):
        spec = load_wfformat(path)
        for k in (2, 4, 6, 8, 12, 16):
            listed = schedule(spec, {"default": k}).makespan_s
            planned = best_schedule(spec, k, time_limit_s=limit)
            exact = solve_exact(spec, k, time_limit_s=limit)
            bound = max(exact.lower_bound_s, analyze(spec, workers=k).makespan_lower_bound_s)
            optimum = exact.makespan_s if exact.optimal else bound
            optimal_rows.append(
                {
                    "trace": path.stem,
                    "workers": k,
                    "planner_makespan_s": planned.makespan_s,
                    "method": planned.method,
                    "optimum_or_bound_s": optimum,
                    "proven_optimal": exact.optimal or planned.makespan_s <= bound * (1 + 1e-4),
                    "makespan_over_optimal": planned.makespan_s / optimum if optimum else 1.0,
                    "list_scheduling_over_optimal": listed / optimum if optimum else 1.0,
                }
            )
    show("planner against the optimum (CP-SAT)", optimal_rows)

    sequential = []
    sources = [
        (f"template:{t}", load_template(t, **dict.fromkeys(template_parameters(t), "x")))
        for t in list_templates()
    ]
    sources += [(f"trace:{p.stem}", load_wfformat(p)) for p in sorted(TRACES.glob("*.json"))]
    for name, spec in sources:
        total = analyze(spec).total_work_s
        planned = best_schedule(spec, 4, time_limit_s=limit).makespan_s
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
            "max_ratio_to_bound": max(r["ratio_to_bound"] for r in rows),
            "makespan_over_lower_bound": max(r["makespan_over_lower_bound"] for r in rows),
            "mean_ratio_to_bound": sum(r["ratio_to_bound"] for r in rows) / len(rows),
            "mean_fifo_ratio_to_bound": sum(r["fifo_ratio_to_bound"] for r in rows) / len(rows),
            "max_makespan_over_optimal": max(r["makespan_over_optimal"] for r in optimal_rows),
            "max_list_scheduling_over_optimal": max(
                r["list_scheduling_over_optimal"] for r in optimal_rows
            ),
            "optimal_rows": optimal_rows,
            "makespan_reduction_vs_sequential": sequential,
            f"schedule_ms_{len(big.steps)}_steps": schedule_ms,
            "schedule_ms_10k_steps": schedule_ms if len(big.steps) == 10_000 else None,
            "executor_overhead_ms_per_step": overhead,
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
