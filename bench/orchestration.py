"""Orchestration throughput at equal terms against LangGraph, latency under load, the bus.

- Throughput, nofx vs LangGraph in the same process and run: the same three graphs (solo;
  pair = author, reviewer, up to 3 rounds; hierarchical = plan, 3 workers, aggregate), every
  agent call made through the same zero-latency simulator and counted on both sides (steps =
  agent calls). Both persist to SQLite in WAL mode with the same ``synchronous`` pragma
  (FULL and NORMAL reported), nofx through its group-commit writer (durability full /
  normal), LangGraph with AsyncSqliteSaver and ``ainvoke``. Both at the same concurrency
  (256 sessions at once) and both at concurrency 1. Submitting the sessions is inside the
  timer on both sides. Every seed is reported, with the mean and a 95% t-interval.
  commits_per_step is counted (nofx: the writer's commit groups; LangGraph: COMMIT
  statements); with synchronous=FULL each WAL commit is one fdatasync (checked with strace
  in tests/chaos/test_crash_consistency.py), with NORMAL none, so fsyncs_per_step is
  commits_per_step at FULL and 0 at NORMAL (checkpoints aside).
- Latency inflation: sessions in flight at once with ~1 s simulated calls; per step
  (StepCompleted - StepStarted) / the agent's own latency, p50 and p95.
- The SQLite limit on this machine: events/s inserted in batches of 1000 per transaction.
- select_p95_ms: ranking candidates among 10,000 registered agents.
- bus_persist_msgs_per_s: 256 publishers through the writer, each awaiting its own durable
  publish, at ``full`` (``_normal`` beside it), each run next to a peer: the same rows through
  plain sqlite3 executemany, 256 per transaction (``--only bus`` runs just this).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import time
from pathlib import Path
from typing import Any

from bench.orchestration_bus import bus_section, bus_sqlite_ceiling, bus_throughput
from bench.orchestration_langgraph import (
    FanOutState,
    GraphState,
    build_graph,
    langgraph_run,
)
from bench.orchestration_load import (
    latency_inflation,
    loop_lag_probe,
    peak_rss_mb,
    select_p95_ms,
    sqlite_batched_limit,
)
from bench.orchestration_nofx import (
    CAPABILITIES,
    CountingProviders,
    make_runtime,
    nofx_run,
    task_request,
    zero_latency_fleet,
)
from bench.report import show, write

# the parts live in bench/orchestration_{nofx,langgraph,load,bus}.py; their names stay here
__all__ = [
    "CAPABILITIES",
    "T_95",
    "CountingProviders",
    "FanOutState",
    "GraphState",
    "build_graph",
    "bus_section",
    "bus_sqlite_ceiling",
    "bus_throughput",
    "equal_terms",
    "interval",
    "langgraph_run",
    "latency_inflation",
    "latency_section",
    "loop_lag_probe",
    "main",
    "make_runtime",
    "nofx_run",
    "parse_args",
    "peak_rss_mb",
    "select_p95_ms",
    "sqlite_batched_limit",
    "task_request",
    "update_section",
    "zero_latency_fleet",
]

T_95 = {1: 12.71, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}


def interval(values: list[float]) -> dict[str, Any]:
    """Mean and 95% t-interval over seeds, with every seed's value."""
    mean = statistics.fmean(values)
    half = (
        T_95.get(len(values) - 1, 1.96) * statistics.stdev(values) / math.sqrt(len(values))
        if len(values) > 1
        else float("nan")
    )
    return {"mean": mean, "ci95": [mean - half, mean + half], "per_seed": values}


def equal_terms(quick: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    seeds = (1, 2, 3)
    sizes = {256: 200 if quick else 400, 1: 30 if quick else 60}
    results: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for durability in ("full", "normal"):
        for concurrency, sessions in sizes.items():
            for pattern in ("solo", "pair", "hierarchical"):
                per_seed: dict[str, list[dict[str, Any]]] = {"nofx": [], "langgraph": []}
                for seed in seeds:
                    ours = asyncio.run(nofx_run(pattern, sessions, concurrency, durability, seed))
                    theirs = asyncio.run(
                        langgraph_run(pattern, sessions, concurrency, durability, seed)
                    )
                    per_seed["nofx"].append(ours)
                    per_seed["langgraph"].append(theirs)
                ratios = [
                    o["steps_per_s"] / t["steps_per_s"]
                    for o, t in zip(per_seed["nofx"], per_seed["langgraph"], strict=True)
                ]
                key = f"{durability}/c{concurrency}/{pattern}"
                entry: dict[str, Any] = {
                    "durability": durability,
                    "synchronous": durability.upper(),
                    "concurrency": concurrency,
                    "pattern": pattern,
                    "sessions": sessions,
                    "ratio_steps_per_s": interval(ratios),
                }
                for side, runs in per_seed.items():
                    entry[side] = {
                        metric: interval([r[metric] for r in runs])
                        for metric in ("steps_per_s", "sessions_per_s", "commits_per_step")
                    }
                    for metric in (
                        "loop_cpu_us_per_step",
                        "writer_cpu_us_per_step",
                        "writer_busy_us_per_step",
                    ):
                        if metric in runs[0]:
                            entry[side][metric] = interval([r[metric] for r in runs])
                    entry[side]["steps_per_session"] = runs[0]["steps"] / max(
                        runs[0]["finished"], 1
                    )
                    entry[side]["fsyncs_per_step"] = (
                        entry[side]["commits_per_step"]["mean"] if durability == "full" else 0.0
                    )
                results[key] = entry
                rows.append(
                    {
                        "durability": durability,
                        "conc": concurrency,
                        "pattern": pattern,
                        "nofx_steps_s": entry["nofx"]["steps_per_s"]["mean"],
                        "lg_steps_s": entry["langgraph"]["steps_per_s"]["mean"],
                        "ratio": entry["ratio_steps_per_s"]["mean"],
                        "ratio_lo": entry["ratio_steps_per_s"]["ci95"][0],
                        "ratio_hi": entry["ratio_steps_per_s"]["ci95"][1],
                        "nofx_commits_step": entry["nofx"]["commits_per_step"]["mean"],
                        "lg_commits_step": entry["langgraph"]["commits_per_step"]["mean"],
                    }
                )
    return results, rows


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run (about a minute)")
    parser.add_argument("--json", type=Path, default=None, help="write results as JSON here")
    parser.add_argument(
        "--only",
        choices=("latency", "bus"),
        default=None,
        help="run one section; with --json its fields replace those in the file",
    )
    parser.add_argument(
        "--loads", type=int, nargs="+", default=None, help="sessions in flight to measure"
    )
    return parser.parse_args()


def latency_section(loads: tuple[int, ...]) -> dict[str, Any]:
    latency = [asyncio.run(latency_inflation(n)) for n in loads]
    show("latency inflation, ~1 s simulated calls, durability full", latency)
    return {
        "latency_inflation": latency,
        "latency_inflation_p95_at_max": latency[-1]["latency_inflation_p95"],
        "sessions_in_flight_max": latency[-1]["sessions_in_flight"],
        # sessions claimed at once vs agent calls actually running at once (ADR 0015)
        "peak_calls_in_flight_at_max": latency[-1]["peak_calls_in_flight"],
    }


def main() -> None:
    args = parse_args()
    default_loads = (100, 500, 1000) if args.quick else (100, 1000, 10_000)
    loads = tuple(args.loads) if args.loads else default_loads
    if args.only == "latency":
        update_section(args.json, latency_section(loads), "latency_inflation_run", "latency")
        return
    if args.only == "bus":
        update_section(args.json, bus_section(args.quick), "bus_run", "bus")
        return
    began = time.perf_counter()
    # one process on each side: nofx's event loop plus its writer thread, LangGraph's loop
    results: dict[str, Any] = {"durability_default": "full", "processes_per_side": 1}
    equal, rows = equal_terms(args.quick)
    show("steps per second at equal terms (mean over seeds; ratio = nofx / LangGraph)", rows)
    results["equal_terms"] = equal
    for durability in ("full", "normal"):
        results[f"ratio_vs_langgraph_{durability}"] = {
            p: equal[f"{durability}/c256/{p}"]["ratio_steps_per_s"]["mean"]
            for p in ("solo", "pair", "hierarchical")
        }
        results[f"ratio_vs_langgraph_{durability}_c1"] = {
            p: equal[f"{durability}/c1/{p}"]["ratio_steps_per_s"]["mean"]
            for p in ("solo", "pair", "hierarchical")
        }
        results[f"durable_steps_per_s_{durability}"] = max(
            equal[f"{durability}/c256/{p}"]["nofx"]["steps_per_s"]["mean"]
            for p in ("solo", "pair", "hierarchical")
        )
    limit = {d: sqlite_batched_limit(d) for d in ("full", "normal")}
    results["sqlite_batched_events_per_s"] = limit
    solo_full = equal["full/c256/solo"]
    events_per_step = 5.0  # solo: SessionRequested, SessionStarted, AgentSelected, StepStarted,
    # StepCompleted, SessionCompleted = 6 events per 1-step session (+1 sessions row)
    results["durable_events_per_s_full_solo"] = solo_full["nofx"]["sessions_per_s"]["mean"] * (
        events_per_step + 1
    )
    results["fraction_of_sqlite_batched_limit_full"] = (
        results["durable_events_per_s_full_solo"] / limit["full"]
    )
    results["durable_steps_per_s"] = results["durable_steps_per_s_normal"]
    show(
        "durable throughput",
        [
            {
                "durable_steps_per_s_full": results["durable_steps_per_s_full"],
                "durable_steps_per_s_normal": results["durable_steps_per_s_normal"],
                "sqlite_batched_full_events_s": limit["full"],
                "sqlite_batched_normal_events_s": limit["normal"],
                "nofx_solo_full_events_s": results["durable_events_per_s_full_solo"],
                "fraction_of_limit_full": results["fraction_of_sqlite_batched_limit_full"],
            }
        ],
    )
    results.update(latency_section(loads))
    select = select_p95_ms(2_000 if args.quick else 10_000, 200 if args.quick else 1000)
    show("agent selection", [select])
    results.update(
        {
            "select_p95_ms": select["select_p95_ms"],
            "select_p50_ms": select["select_p50_ms"],
            "select_agents": select["agents"],
            "selector": select["selector"],
        }
    )
    results.update(bus_section(args.quick, repeats=2 if args.quick else 3))
    results["bench_wall_s"] = time.perf_counter() - began
    write(args.json, "orchestration", args.quick, results)


def update_section(path: Path | None, fields: dict[str, Any], note: str, section: str) -> None:
    """Replace one section's fields in an existing results file, saying when it was re-run."""
    if path is None:
        return
    import json
    from datetime import UTC, datetime

    results = json.loads(path.read_text()) if path.exists() else {"benchmark": "orchestration"}
    results.update(fields)
    results[note] = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "note": f"only this section was re-run (--only {section}); other fields are from the "
        "earlier full run",
    }
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
