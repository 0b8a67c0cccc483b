"""bench.orchestration under load: latency inflation, SQLite's batched limit, selection p95."""

from __future__ import annotations

import asyncio
import os
import random
import resource
import sqlite3
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.orchestration_nofx import make_runtime
from bench.report import percentile
from nofx.data_contract import StreamType
from nofx.domain import AgentSpec, SessionRequest, Task
from nofx.registry import AgentRegistry
from nofx.runtime import Runtime, RuntimeConfig
from nofx.store import EventStore


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def latency_inflation(n: int, durability: str = "full") -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        store = EventStore(f"sqlite:///{Path(tmp) / 'e.db'}", durability=durability)  # type: ignore[arg-type]
        registry = AgentRegistry(store)
        for i in range(8):
            registry.register(
                AgentSpec(
                    name=f"slow{i}",
                    capabilities=[{"name": "code.generate", "proficiency": 3}],
                    provider={
                        "config": {
                            "latency_median_ms": 1000.0,
                            "latency_sigma": 0.2,
                            "error_rate": 0.0,
                            "rate_limit_rate": 0.0,
                            "skill": {"code.generate": 0.99},
                        }
                    },
                    max_concurrency=10_000,
                )
            )
        counter: Counter[str] = Counter()
        runtime = make_runtime(
            store, registry, time_scale=1.0, concurrency=n, seed=2, counter=counter
        )
        gate = asyncio.Semaphore(1000)

        async def submit(i: int) -> None:
            async with gate:
                await runtime.sessions.submit_async(
                    SessionRequest(task=Task(prompt=f"c{i}", capability="code.generate"))
                )

        await asyncio.gather(*(submit(i) for i in range(n)))
        lags: list[float] = []
        probe = asyncio.ensure_future(loop_lag_probe(lags))
        stats = store.writer.stats
        writer_cpu, loop_cpu, cpu = stats.cpu_s, time.thread_time(), time.process_time()
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        summary = await runtime.run_pending(batch=n)
        wall = time.perf_counter() - start
        loop_cpu, cpu = time.thread_time() - loop_cpu, time.process_time() - cpu
        writer_cpu = stats.cpu_s - writer_cpu
        probe.cancel()
        events = store.read_all(limit=10_000_000, stream_type=StreamType.SESSION)
        store.dispose()
    started = {
        (e.stream_id, e.payload["step_id"], e.payload["attempt"]): e.occurred_at
        for e in events
        if e.type == "StepStarted"
    }
    inflation = []
    for e in events:
        if e.type == "StepCompleted":
            begun = started[(e.stream_id, e.payload["step_id"], e.payload["attempt"])]
            took_ms = (e.occurred_at - begun).total_seconds() * 1000
            inflation.append(took_ms / max(float(e.payload["latency_ms"]), 1e-6))
    return {
        "sessions_in_flight": n,
        "peak_calls_in_flight": counter["peak_in_flight"],
        "completed": len(summary.sessions),
        "wall_s": wall,
        "latency_inflation_p50": percentile(inflation, 50),
        "latency_inflation_p95": percentile(inflation, 95),
        "latency_inflation_max": max(inflation),
        "loop_lag_p50_ms": percentile(lags, 50),
        "loop_lag_p95_ms": percentile(lags, 95),
        "loop_lag_max_ms": max(lags, default=0.0),
        # CPU seconds of the run (loop thread, writer thread, whole process) next to its wall
        # time, and the host's 1-minute load: the bench host is shared (ADR 0015)
        "loop_cpu_s": loop_cpu,
        "writer_cpu_s": writer_cpu,
        "process_cpu_s": cpu,
        "host_load_1m": load_before,
        "peak_rss_mb": peak_rss_mb(),
    }


async def loop_lag_probe(lags: list[float], every_s: float = 0.01) -> None:
    """How late the event loop runs a 10 ms timer, in ms, for as long as it runs."""
    while True:
        due = time.perf_counter() + every_s
        await asyncio.sleep(every_s)
        lags.append(max(0.0, time.perf_counter() - due) * 1000)


def sqlite_batched_limit(durability: str, rows: int = 50_000) -> float:
    """Events/s SQLite itself takes on this machine in batches of 1000 per transaction."""
    with tempfile.TemporaryDirectory() as tmp:
        store = EventStore(f"sqlite:///{Path(tmp) / 'e.db'}", durability=durability)  # type: ignore[arg-type]
        store.dispose()
        conn = sqlite3.connect(Path(tmp) / "e.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={durability.upper()}")
        payload = '{"step_id": "solo", "attempt": 1}'
        start = time.perf_counter()
        for batch in range(rows // 1000):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO events (stream_id, stream_type, seq, type, tenant_id, occurred_at,"
                " idempotency_key, payload) VALUES (?, 'session', ?, 'E', 'default',"
                " '2026-12-01 00:00:00', ?, ?)",
                [(f"s{batch}", i + 1, f"k{batch}/{i}", payload) for i in range(1000)],
            )
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
        conn.close()
    return rows / elapsed


def select_p95_ms(n_agents: int, queries: int) -> dict[str, Any]:
    """p50/p95 of one ``rank`` over ~15% of ``n_agents`` candidates (the product's router:
    bounded scan, ADR 0020), and the same router scoring every candidate on a tenth of the
    queries in the same run (the ratio is the comparable number on a shared machine)."""
    from nofx.routing.selection import ProficiencySelector, SelectionRequest

    try:
        from nofx.routing.router import SmartRouter

        selector: Any = SmartRouter(seed=3)
        full: Any = SmartRouter(seed=3, shortlist=None)
        name = "SmartRouter"
    except ImportError:
        selector, full, name = ProficiencySelector(), None, "ProficiencySelector"
    with tempfile.TemporaryDirectory() as tmp:
        store = EventStore(f"sqlite:///{Path(tmp) / 'e.db'}")
        registry = AgentRegistry(store)
        rng = random.Random(5)
        caps = [f"cap.c{i}" for i in range(20)]
        for i in range(n_agents):
            registry.register(
                AgentSpec(
                    name=f"a{i}",
                    capabilities=[
                        {"name": c, "proficiency": rng.randint(1, 5)} for c in rng.sample(caps, 3)
                    ],
                    pricing={"input_per_1k_tokens": rng.uniform(0.0001, 0.01)},
                )
            )
        runtime = Runtime(store, registry, selector=selector, config=RuntimeConfig(time_scale=0.0))

        def timed(router: Any, n: int) -> tuple[list[float], list[float]]:
            wall, cpu = [], []
            for q in range(n):
                capability = caps[q % len(caps)]
                # cached after the first read, as in the runtime
                candidates = runtime.candidates("default", capability)
                request = SelectionRequest(capability=capability, optimize="balanced")
                t0, c0 = time.perf_counter(), time.thread_time()
                router.rank(request, candidates)
                cpu.append((time.thread_time() - c0) * 1000)
                wall.append((time.perf_counter() - t0) * 1000)
            return wall, cpu

        timed(selector, len(caps))  # the indexes a long-lived worker has built
        timings, cpu = timed(selector, queries)
        full_timings, _ = timed(full, max(len(caps), queries // 10)) if full else ([], [])
        store.dispose()
    result: dict[str, Any] = {
        "selector": name,
        "agents": n_agents,
        "queries": queries,
        "select_p50_ms": percentile(timings, 50),
        "select_p95_ms": percentile(timings, 95),
        "select_cpu_p95_ms": percentile(cpu, 95),
    }
    if full_timings:
        result["select_p95_ms_full_scan"] = percentile(full_timings, 95)
        result["select_p95_ratio_full_scan_over_bounded"] = (
            result["select_p95_ms_full_scan"] / result["select_p95_ms"]
        )
    return result
