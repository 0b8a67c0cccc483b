"""Workflow scheduling quality on real WfCommons traces: makespan against the lower bound.

For each trace and worker count K, the list scheduler's makespan (upward-rank
priority) is compared with max(critical path, total work / K), which no
schedule can beat, and with a FIFO list scheduler (declaration order) as the
naive peer. Durations are the traces' measured runtimes.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.report import parse_args, show, write
from nofx.workflows import analyze, load_wfformat, schedule
from nofx.workflows.model import WorkflowSpec

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
                    "fifo_makespan_s": naive,
                    "fifo_ratio_to_bound": naive / bound if bound else 1.0,
                    "schedule_ms": elapsed_ms,
                }
            )
    show("list scheduling on real traces (measured runtimes)", rows)
    write(
        args.json,
        "workflows",
        args.quick,
        {
            "max_ratio_to_bound": max(r["ratio_to_bound"] for r in rows),
            "mean_ratio_to_bound": sum(r["ratio_to_bound"] for r in rows) / len(rows),
            "mean_fifo_ratio_to_bound": sum(r["fifo_ratio_to_bound"] for r in rows) / len(rows),
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
