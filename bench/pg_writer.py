"""The PostgreSQL commit group's cost: writer CPU per event and ms per group, in one process.

A burst of sessions is queued, then one in-process runtime (zero-latency simulated agents,
128 sessions at once) drains it on a fresh PostgreSQL database. Only the drain is measured:
the store's writer thread reports its own busy time and CPU time (``WriterStats``), so the
numbers hold on a loaded host better than wall clock. Every repeat is reported, with the
mean and a 95% t-interval; wall clock and the process's CPU time are reported alongside.

python -m bench.pg_writer [--quick] [--json PATH]
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time
from typing import Any

from bench.cluster import T_95, drop_pg_database, fresh_pg_database, request, seed_fleet
from bench.report import parse_args, show, write
from nofx.agents import ProviderSet
from nofx.runtime import Runtime, RuntimeConfig
from nofx.store import EventStore


def run_once(burst: int, seed: int) -> dict[str, Any]:
    url = fresh_pg_database()
    if url is None:
        raise SystemExit("PostgreSQL is needed (NOFX_BENCH_POSTGRES_URL or NOFX_TEST_POSTGRES_URL)")
    store = EventStore(url)
    try:
        service = seed_fleet(store)
        for i in range(burst):
            service.submit(request(i))
        before = dataclasses.replace(store.writer.stats)
        providers = ProviderSet.default(seed=seed, time_scale=0.0)
        config = RuntimeConfig(worker_id="w0", time_scale=0.0, concurrency=128, seed=seed)
        runtime = Runtime(store, providers=providers, config=config)
        wall, cpu = time.perf_counter(), time.process_time()
        asyncio.run(runtime.run_pending())
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        after = store.writer.stats
        groups = after.groups - before.groups
        events = after.events - before.events
        return {
            "seed": seed,
            "sessions": burst,
            "wall_s": round(wall, 3),
            "process_cpu_s": round(cpu, 3),
            "groups": groups,
            "events": events,
            "events_per_group": round(events / max(groups, 1), 1),
            "writer_cpu_us_per_event": round(
                1e6 * (after.cpu_s - before.cpu_s) / max(events, 1), 1
            ),
            "writer_busy_us_per_event": round(
                1e6 * (after.busy_s - before.busy_s) / max(events, 1), 1
            ),
            "ms_per_group": round(1e3 * (after.busy_s - before.busy_s) / max(groups, 1), 2),
            "writer_cpu_ms_per_group": round(
                1e3 * (after.cpu_s - before.cpu_s) / max(groups, 1), 2
            ),
            "fallbacks": after.fallbacks - before.fallbacks,
        }
    finally:
        store.dispose()
        drop_pg_database(url)


def interval(values: list[float]) -> str:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.2f}"
    half = T_95[len(values) - 1] * statistics.stdev(values) / len(values) ** 0.5
    return f"{mean:.2f} [{mean - half:.2f}, {mean + half:.2f}]"


def main() -> None:
    args = parse_args(__doc__ or "")
    burst, seeds = (300, [1, 2]) if args.quick else (1500, [1, 2, 3])
    rows = [run_once(burst, seed) for seed in seeds]
    show("PostgreSQL commit groups (one in-process runtime)", rows)
    summary = {
        key: interval([float(r[key]) for r in rows])
        for key in ("writer_cpu_us_per_event", "ms_per_group", "writer_cpu_ms_per_group", "wall_s")
    }
    print(summary)
    write(args.json, "pg_writer", args.quick, {"runs": rows, "summary": summary})


if __name__ == "__main__":
    main()
