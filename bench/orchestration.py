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
import operator
import os
import random
import resource
import sqlite3
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, TypedDict

from bench.report import percentile, show, write
from nofx.agents import AgentCall, AgentCallError, ProviderSet, SimulatedProvider
from nofx.domain import AgentSpec, PatternName, SessionRequest, Task
from nofx.registry import AgentRegistry
from nofx.runtime import Runtime, RuntimeConfig
from nofx.store import EventStore

CAPABILITIES = ("code.generate", "code.review", "plan.decompose", "text.summarize")
T_95 = {1: 12.71, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}


def zero_latency_fleet(registry: AgentRegistry, n: int = 6) -> list:
    agents = []
    for i in range(n):
        agents.append(
            registry.register(
                AgentSpec(
                    name=f"z{i}",
                    capabilities=[
                        {"name": c, "proficiency": 2 + i % 4}
                        for c in (
                            "code.generate",
                            "code.review",
                            "plan.decompose",
                            "text.summarize",
                        )
                    ],
                    pricing={
                        "input_per_1k_tokens": 0.0004 * (i + 1),
                        "output_per_1k_tokens": 0.001 * (i + 1),
                    },
                    provider={
                        "config": {
                            "latency_median_ms": 0.0,
                            "error_rate": 0.0,
                            "rate_limit_rate": 0.0,
                            "skill": {
                                c: 0.97
                                for c in (
                                    "code.generate",
                                    "code.review",
                                    "plan.decompose",
                                    "text.summarize",
                                )
                            },
                        }
                    },
                    max_concurrency=10_000,
                )
            )
        )
    return agents


class CountingProviders(ProviderSet):
    """The same providers; every agent call really made is counted (and in flight tracked)."""

    def __init__(self, inner: ProviderSet, counter: Counter[str]) -> None:
        class Counted:
            def __init__(self, provider: Any) -> None:
                self.provider = provider

            async def invoke(self, agent: Any, call: AgentCall) -> Any:
                counter["calls"] += 1
                counter["in_flight"] += 1
                counter["peak_in_flight"] = max(counter["peak_in_flight"], counter["in_flight"])
                try:
                    return await self.provider.invoke(agent, call)
                finally:
                    counter["in_flight"] -= 1

        super().__init__({k: Counted(p) for k, p in inner.providers.items()})  # type: ignore[misc]


def make_runtime(
    store: EventStore,
    registry: AgentRegistry,
    *,
    time_scale: float,
    concurrency: int,
    seed: int,
    counter: Counter[str],
) -> Runtime:
    from nofx.patterns import default_patterns
    from nofx.routing.router import SmartRouter

    providers = CountingProviders(ProviderSet.default(seed=seed, time_scale=time_scale), counter)
    return Runtime(
        store,
        registry,
        providers=providers,
        selector=SmartRouter(seed=seed),
        patterns=default_patterns(),
        config=RuntimeConfig(time_scale=time_scale, seed=seed, concurrency=concurrency),
    )


def task_request(i: int, pattern: PatternName) -> SessionRequest:
    return SessionRequest(
        task=Task(prompt=f"t{i}", capability="code.generate", complexity=0.3), pattern=pattern
    )


async def nofx_run(
    pattern: str, sessions: int, concurrency: int, durability: str, seed: int
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        store = EventStore(f"sqlite:///{Path(tmp) / 'e.db'}", durability=durability)  # type: ignore[arg-type]
        registry = AgentRegistry(store)
        zero_latency_fleet(registry)
        counter: Counter[str] = Counter()
        runtime = make_runtime(
            store, registry, time_scale=0.0, concurrency=concurrency, seed=seed, counter=counter
        )
        stats = store.writer.stats
        groups_before = stats.groups
        gate = asyncio.Semaphore(concurrency)
        kind = PatternName(pattern)

        async def submit(i: int) -> None:
            async with gate:
                await runtime.sessions.submit_async(task_request(i, kind))

        writer_cpu = stats.cpu_s
        loop_cpu = time.thread_time()
        start = time.perf_counter()
        await asyncio.gather(*(submit(i) for i in range(sessions)))
        summary = await runtime.run_pending(batch=max(concurrency, 500))
        wall = time.perf_counter() - start
        loop_cpu = time.thread_time() - loop_cpu
        writer_cpu = stats.cpu_s - writer_cpu
        commits = stats.groups - groups_before
        events = store.count_events()
        store.dispose()
    rates = _rates(
        "nofx", pattern, sessions, len(summary.sessions), counter["calls"], wall, commits, events
    )
    # where the CPU of a step goes: the event loop's thread and the writer's (ADR 0015)
    rates["loop_cpu_us_per_step"] = loop_cpu / max(counter["calls"], 1) * 1e6
    rates["writer_cpu_us_per_step"] = writer_cpu / max(counter["calls"], 1) * 1e6
    return rates


def _rates(
    side: str,
    pattern: str,
    sessions: int,
    finished: int,
    calls: int,
    wall: float,
    commits: int,
    rows: int,
) -> dict[str, Any]:
    return {
        "side": side,
        "pattern": pattern,
        "sessions": sessions,
        "finished": finished,
        "steps": calls,
        "wall_s": wall,
        "sessions_per_s": finished / wall,
        "steps_per_s": calls / wall,
        "commits_per_step": commits / max(calls, 1),
        "rows_written": rows,
    }


# -- LangGraph: the same graphs, the same simulator, AsyncSqliteSaver + ainvoke -------------
class GraphState(TypedDict, total=False):
    task: str
    output: str
    rounds: int
    accepted: bool


class FanOutState(TypedDict, total=False):
    task: str
    parts: list
    results: Annotated[list, operator.add]
    output: str


def build_graph(pattern: str, call: Any) -> Any:
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Send

    builder: Any
    if pattern == "solo":
        builder = StateGraph(GraphState)

        async def agent(s: GraphState) -> dict[str, Any]:
            return {"output": await call("code.generate", s["task"])}

        builder.add_node("agent", agent)
        builder.add_edge(START, "agent")
        builder.add_edge("agent", END)
    elif pattern == "pair":
        builder = StateGraph(GraphState)

        async def author(s: GraphState) -> dict[str, Any]:
            rounds = s.get("rounds", 0) + 1
            return {
                "output": await call("code.generate", f"{s['task']}/{rounds}"),
                "rounds": rounds,
            }

        async def reviewer(s: GraphState) -> dict[str, Any]:
            verdict = await call("code.review", f"{s['task']}/review/{s['rounds']}")
            return {"accepted": verdict != "fail"}

        builder.add_node("author", author)
        builder.add_node("reviewer", reviewer)
        builder.add_edge(START, "author")
        builder.add_edge("author", "reviewer")
        builder.add_conditional_edges(
            "reviewer", lambda s: END if s["accepted"] or s["rounds"] >= 3 else "author"
        )
    else:
        builder = StateGraph(FanOutState)

        async def plan(s: FanOutState) -> dict[str, Any]:
            await call("plan.decompose", s["task"])  # the plan is an agent call, as in nofx
            return {"parts": [f"{s['task']}/{i}" for i in range(3)]}

        async def worker(s: dict[str, Any]) -> dict[str, Any]:
            return {"results": [await call("code.generate", s["part"])]}

        async def aggregate(s: FanOutState) -> dict[str, Any]:
            return {"output": await call("text.summarize", s["task"])}

        builder.add_node("plan", plan)
        builder.add_node("worker", worker)
        builder.add_node("aggregate", aggregate)
        builder.add_edge(START, "plan")
        builder.add_conditional_edges(
            "plan", lambda s: [Send("worker", {"part": p}) for p in s["parts"]]
        )
        builder.add_edge("worker", "aggregate")
        builder.add_edge("aggregate", END)
    return builder


async def langgraph_run(
    pattern: str, sessions: int, concurrency: int, durability: str, seed: int
) -> dict[str, Any]:
    import aiosqlite

    provider = SimulatedProvider(seed=seed, time_scale=0.0)
    with tempfile.TemporaryDirectory() as tmp:
        store = EventStore(f"sqlite:///{Path(tmp) / 'agents.db'}")
        agents = zero_latency_fleet(AgentRegistry(store))
        store.dispose()
        counter: Counter[str] = Counter()

        async def call(capability: str, key: str) -> str:
            counter["calls"] += 1
            agent = agents[counter["calls"] % len(agents)]
            try:
                result = await provider.invoke(
                    agent,
                    AgentCall(
                        call_id=key,
                        capability=capability,
                        prompt=key,
                        input_tokens=800,
                        complexity=0.3,
                    ),
                )
            except AgentCallError:
                return "fail"  # the graph's own edge decides what to do, as in nofx's retry
            return result.output

        conn = await aiosqlite.connect(str(Path(tmp) / "lg.db"))
        try:
            return await _langgraph_timed(
                pattern, sessions, concurrency, durability, conn, call, counter
            )
        finally:
            await conn.close()


async def _langgraph_timed(
    pattern: str,
    sessions: int,
    concurrency: int,
    durability: str,
    conn: Any,
    call: Any,
    counter: Counter[str],
) -> dict[str, Any]:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    if True:
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute(f"PRAGMA synchronous={durability.upper()}")
        await conn.set_trace_callback(
            lambda sql: counter.update(commits=1) if sql.strip().upper() == "COMMIT" else None
        )
        saver = AsyncSqliteSaver(conn)
        await saver.setup()
        graph = build_graph(pattern, call).compile(checkpointer=saver)
        commits_before = counter["commits"]
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with gate:
                await graph.ainvoke(
                    {"task": f"t{i}"}, config={"configurable": {"thread_id": f"s{i}"}}
                )

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(sessions)))
        wall = time.perf_counter() - start
        commits = counter["commits"] - commits_before
        rows = (await (await conn.execute("SELECT count(*) FROM writes")).fetchone())[0]
    return _rates("langgraph", pattern, sessions, sessions, counter["calls"], wall, commits, rows)


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
                entry = {
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
                    for metric in ("loop_cpu_us_per_step", "writer_cpu_us_per_step"):
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


# -- latency under load ---------------------------------------------------------------------
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
        events = store.read_all(limit=10_000_000, stream_type="session")
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
    result = {
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


async def bus_throughput(
    messages: int, concurrency: int, durability: str = "full"
) -> dict[str, Any]:
    """``concurrency`` publishers at once, each publishing its next message as soon as the
    last one is durable (awaited), all on one session topic; then a replay of the channel."""
    from nofx.bus import MessageBus
    from nofx.domain import Message

    with tempfile.TemporaryDirectory() as tmp:
        store = EventStore(f"sqlite:///{Path(tmp) / 'e.db'}", durability=durability)  # type: ignore[arg-type]
        bus = MessageBus(store)
        numbers = iter(range(messages))

        async def publisher() -> None:
            for i in numbers:  # shared: each message is published once, by one publisher
                await bus.publish_async(
                    Message(
                        sender="bench", topic="session-bench", session_id="bench", body={"i": i}
                    )
                )

        stats = store.writer.stats
        groups, writer_cpu = stats.groups, stats.cpu_s
        start, loop_cpu = time.perf_counter(), time.thread_time()
        await asyncio.gather(*(publisher() for _ in range(concurrency)))
        persist = messages / (time.perf_counter() - start)
        loop_cpu = time.thread_time() - loop_cpu
        groups, writer_cpu = stats.groups - groups, stats.cpu_s - writer_cpu
        start = time.perf_counter()
        replayed = list(bus.replay("topic:session-bench", from_offset=0))
        replay = len(replayed) / (time.perf_counter() - start)
        in_order = [m.seq for m in replayed] == list(range(1, messages + 1))
        every_message = sorted(m.body["i"] for m in replayed) == list(range(messages))
        store.dispose()
    return {
        "messages": messages,
        "publishers_at_once": concurrency,
        "durability": store.durability,
        "bus_persist_msgs_per_s": persist,
        "bus_replay_msgs_per_s": replay,
        "bus_commit_groups": groups,
        # CPU time of the two threads per message: steadier than msgs/s on a loaded host
        "bus_loop_cpu_us_per_msg": loop_cpu / messages * 1e6,
        "bus_writer_cpu_us_per_msg": writer_cpu / messages * 1e6,
        "bus_channel_gap_free": in_order and every_message,
    }


def bus_sqlite_ceiling(messages: int, batch: int, durability: str) -> tuple[float, float]:
    """The peer: the bus's rows (a message row and its MessagePublished event) written by
    plain sqlite3 ``executemany``, ``batch`` messages per transaction, same schema and
    pragmas, one thread, no event loop: what SQLite takes for the same work. Returns
    (messages/s, CPU microseconds per message)."""
    import uuid

    import orjson

    from nofx.domain import utcnow

    with tempfile.TemporaryDirectory() as tmp:
        EventStore(f"sqlite:///{Path(tmp) / 'e.db'}", durability=durability).dispose()  # type: ignore[arg-type]
        conn = sqlite3.connect(Path(tmp) / "e.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={durability.upper()}")
        channel, stream = "topic:session-bench", "channel-default-topic:session-bench"
        seq = 0
        start, cpu = time.perf_counter(), time.thread_time()
        for first in range(0, messages, batch):
            now = utcnow().strftime("%Y-%m-%d %H:%M:%S.%f")
            rows, events = [], []
            for i in range(first, min(messages, first + batch)):
                seq += 1
                message_id = f"msg_{uuid.uuid4().hex}"
                body = orjson.dumps({"i": i}).decode()
                rows.append(("default", message_id, channel, seq, "bench", "bench", body, now))
                payload = {
                    "messaging.message.id": message_id,
                    "messaging.destination.name": channel,
                    "channel_seq": seq,
                    "session_id": "bench",
                    "sender": "bench",
                    "body_bytes": len(body),
                    "stored_as_blob": False,
                }
                events.append((stream, seq, now, orjson.dumps(payload).decode()))
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "SELECT max(channel_seq) FROM agent_communications"
                " WHERE tenant_id = 'default' AND channel = ?",
                (channel,),
            ).fetchone()
            conn.executemany(
                "INSERT INTO agent_communications (tenant_id, message_id, channel, channel_seq,"
                " session_id, sender, body, body_ref, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?)",
                rows,
            )
            conn.executemany(
                "INSERT INTO events (stream_id, stream_type, seq, type, tenant_id, occurred_at,"
                " idempotency_key, payload)"
                " VALUES (?, 'bus', ?, 'MessagePublished', 'default', ?, NULL, ?)",
                events,
            )
            conn.execute("COMMIT")
        elapsed, cpu = time.perf_counter() - start, time.thread_time() - cpu
        conn.close()
    return messages / elapsed, cpu / messages * 1e6


def bus_section(quick: bool, repeats: int = 3) -> dict[str, Any]:
    """The bus at ``full`` and ``normal``, each run next to its peer (the same rows through
    plain sqlite3 in batches of the publishers' count), alternating, with the host's load."""
    messages, concurrency = (5_000 if quick else 20_000), 256
    runs: list[dict[str, Any]] = []
    for repeat in range(repeats):
        for durability in ("full", "normal"):
            load = os.getloadavg()[0]
            bus = asyncio.run(bus_throughput(messages, concurrency, durability))
            ceiling, ceiling_cpu = bus_sqlite_ceiling(messages, concurrency, durability)
            runs.append(
                {
                    "durability": durability,
                    "repeat": repeat,
                    "messages": messages,
                    "load_1m": load,
                    "bus_msgs_per_s": bus["bus_persist_msgs_per_s"],
                    "sqlite_peer_msgs_per_s": ceiling,
                    "fraction_of_peer": bus["bus_persist_msgs_per_s"] / ceiling,
                    "commit_groups": bus["bus_commit_groups"],
                    "loop_cpu_us_msg": bus["bus_loop_cpu_us_per_msg"],
                    "writer_cpu_us_msg": bus["bus_writer_cpu_us_per_msg"],
                    "peer_cpu_us_msg": ceiling_cpu,
                    "replay_msgs_per_s": bus["bus_replay_msgs_per_s"],
                    "gap_free": bus["bus_channel_gap_free"],
                }
            )
    show(
        f"message bus: {concurrency} publishers awaiting each publish, one topic "
        "(peer: the same rows through plain sqlite3 executemany)",
        runs,
    )

    def median(durability: str, key: str) -> float:
        return statistics.median(r[key] for r in runs if r["durability"] == durability)

    return {
        "bus_persist_msgs_per_s": median("full", "bus_msgs_per_s"),
        "bus_durability": "full",
        "bus_persist_msgs_per_s_normal": median("normal", "bus_msgs_per_s"),
        "bus_sqlite_peer_msgs_per_s": {
            d: median(d, "sqlite_peer_msgs_per_s") for d in ("full", "normal")
        },
        "bus_fraction_of_sqlite_peer": {
            d: median(d, "fraction_of_peer") for d in ("full", "normal")
        },
        "bus_cpu_us_per_msg": {
            d: {
                "loop": median(d, "loop_cpu_us_msg"),
                "writer": median(d, "writer_cpu_us_msg"),
                "sqlite_peer": median(d, "peer_cpu_us_msg"),
            }
            for d in ("full", "normal")
        },
        "bus_replay_msgs_per_s": median("full", "replay_msgs_per_s"),
        "bus_channel_gap_free": all(r["gap_free"] for r in runs),
        "bus_publishers_at_once": concurrency,
        "bus_runs": runs,
    }


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
