"""The independent reference for bench.workflows: CP-SAT for 60 s per WfCommons trace and K.

Run once, offline, and committed (bench/reference/wfcommons_cpsat60.json); the benchmark
reads it and never recomputes it. It is deliberately *not* the planner: a plain
time-indexed-free CP-SAT model (intervals, precedences, one cumulative of capacity K) on a
single search thread, hinted only by the textbook upward-rank list schedule, with no
symmetry breaking and no portfolio. It stores the best makespan found and the proven lower
bound (the larger of CP-SAT's bound and max(critical path, total work / K)).

    python -m bench.workflows_reference [--seconds 60] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from nofx.workflows import analyze, load_wfformat
from nofx.workflows.model import WorkflowSpec
from nofx.workflows.scheduler import schedule

TRACES = Path(__file__).resolve().parents[1] / "tests" / "data" / "wfcommons"
OUT = Path(__file__).resolve().parent / "reference" / "wfcommons_cpsat60.json"
WORKERS = (2, 3, 4, 6, 8, 12, 16)


def reference_solve(spec: WorkflowSpec, workers: int, seconds: float) -> dict[str, object]:
    from ortools.sat.python import cp_model

    ms = {s.id: max(0, round(s.estimates.duration_s * 1000)) for s in spec.steps}
    horizon = sum(ms.values()) or 1
    model = cp_model.CpModel()
    start = {i: model.new_int_var(0, horizon, f"s{n}") for n, i in enumerate(ms)}
    end = {i: model.new_int_var(0, horizon, f"e{n}") for n, i in enumerate(ms)}
    intervals = [model.new_interval_var(start[i], ms[i], end[i], f"i{i}") for i in ms]
    for step in spec.steps:
        for dep in step.needs:
            model.add(start[step.id] >= end[dep])
    model.add_cumulative(intervals, [1] * len(intervals), workers)
    makespan = model.new_int_var(0, horizon, "makespan")
    model.add_max_equality(makespan, list(end.values()))
    model.minimize(makespan)
    for slot in schedule(spec, {"default": workers}).slots:
        model.add_hint(start[slot.step_id], round(slot.start_s * 1000))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = seconds
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = 1
    began = time.perf_counter()
    status = solver.solve(model)
    elapsed = time.perf_counter() - began
    analysis = analyze(spec, workers=workers)
    analytic_ms = round(analysis.makespan_lower_bound_s * 1000)
    best_ms = round(solver.objective_value)
    bound_ms = max(round(solver.best_objective_bound), analytic_ms)
    return {
        "workers": workers,
        "best_makespan_ms": best_ms,
        "proven_bound_ms": min(bound_ms, best_ms),
        "optimal": status == cp_model.OPTIMAL or best_ms <= bound_ms,
        "status": solver.status_name(status),
        "critical_path_ms": round(analysis.critical_path_s * 1000),
        "total_work_ms": round(analysis.total_work_s * 1000),
        "solve_s": round(elapsed, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    result: dict[str, object] = {
        "about": (
            "CP-SAT (OR-tools, 1 search worker, seed 1) for at most "
            f"{args.seconds:g} s per trace and K; durations in integer milliseconds; "
            "proven_bound_ms is max(CP-SAT bound, critical path, total work / K)"
        ),
        "seconds": args.seconds,
        "traces": {},
    }
    traces: dict[str, list[dict[str, object]]] = {}
    for path in sorted(TRACES.glob("*.json")):
        spec = load_wfformat(path)
        traces[path.stem] = []
        for k in WORKERS:
            row = reference_solve(spec, k, args.seconds)
            traces[path.stem].append(row)
            print(path.stem, row, flush=True)
            result["traces"] = traces
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=1) + "\n")  # partial results survive


if __name__ == "__main__":
    main()
