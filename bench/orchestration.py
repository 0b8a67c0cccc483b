"""Orchestration throughput and scale, against LangGraph in the same run.

- steps_per_s per pattern: zero-latency simulated agents, persistence on (SQLite
  event store), sessions run to completion; the same pattern built in LangGraph
  with its SQLite checkpointer, on the same simulator, in the same process.
- concurrent_sessions: sessions in flight at once with ~1 s simulated latency;
  peak RSS and events lost (must be 0).
- select_p95_ms: ranking candidates among 10,000 registered agents.
- bus_persist_msgs_per_s / bus_replay_msgs_per_s: the message bus, when present.
"""

from __future__ import annotations

import asyncio
import operator
import random
import resource
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, TypedDict

from bench.report import parse_args, percentile, show, write
from nofx.agents import AgentCall, SimulatedProvider
from nofx.domain import AgentSpec, PatternName, SessionRequest, Task
from nofx.registry import AgentRegistry
from nofx.runtime import Runtime, RuntimeConfig
from nofx.store import EventStore


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


def make_runtime(
    store: EventStore, registry: AgentRegistry, time_scale: float, concurrency: int = 256
) -> Runtime:
    patterns = None
    try:
        from nofx.patterns import default_patterns

        patterns = default_patterns()
    except ImportError:
        pass
    selector = None
    try:
        from nofx.routing.router import SmartRouter

        selector = SmartRouter(seed=1)
    except ImportError:
        pass
    return Runtime(
        store,
        registry,
        selector=selector,
        patterns=patterns,
        config=RuntimeConfig(time_scale=time_scale, seed=1, concurrency=concurrency),
    )


def nofx_steps_per_s(pattern: PatternName, sessions: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        store = EventStore(f"sqlite:///{Path(tmp) / 'e.db'}")
        registry = AgentRegistry(store)
        zero_latency_fleet(registry)
        runtime = make_runtime(store, registry, time_scale=0.0)
        if pattern not in runtime.patterns:
            return {"pattern": pattern.value, "skipped": "pattern not available"}
        for i in range(sessions):
            runtime.sessions.submit(
                SessionRequest(
                    task=Task(prompt=f"t{i}", capability="code.generate", complexity=0.3),
                    pattern=pattern,
                )
            )
        start = time.perf_counter()
        summary = asyncio.run(runtime.run_pending())
        wall = time.perf_counter() - start
        steps = sum(
            1
            for e in store.read_all(limit=10_000_000, stream_type="session")
            if e.type == "StepCompleted"
        )
        store.dispose()
    return {
        "pattern": pattern.value,
        "sessions": len(summary.sessions),
        "steps": steps,
        "steps_per_s": steps / wall,
    }


# -- LangGraph, same simulator, SQLite checkpointer ------------------------------------------
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


def langgraph_steps_per_s(pattern: str, sessions: int) -> dict[str, Any]:
    try:
        from langgraph.checkpoint.sqlite import SqliteSaver
        from langgraph.graph import END, START, StateGraph
        from langgraph.types import Send
    except ImportError:
        return {
            "pattern": pattern,
            "skipped": "langgraph not installed (pip install -e '.[bench]')",
        }

    provider = SimulatedProvider(seed=1, time_scale=0.0)
    with tempfile.TemporaryDirectory() as tmp:
        store = EventStore(f"sqlite:///{Path(tmp) / 'agents.db'}")
        agents = zero_latency_fleet(AgentRegistry(store))
        store.dispose()
    counter = Counter()

    def call(capability: str, key: str) -> str:
        counter["steps"] += 1
        agent = agents[counter["steps"] % len(agents)]
        result = provider.outcome(
            agent,
            AgentCall(
                call_id=key, capability=capability, prompt=key, input_tokens=800, complexity=0.3
            ),
        )
        return "fail" if isinstance(result, Exception) else result.output

    builder: Any = StateGraph(GraphState)
    if pattern == "solo":
        builder.add_node("agent", lambda s: {"output": call("code.generate", s["task"])})
        builder.add_edge(START, "agent")
        builder.add_edge("agent", END)
    elif pattern == "pair":
        builder.add_node(
            "author",
            lambda s: {
                "output": call("code.generate", s["task"]),
                "rounds": s.get("rounds", 0) + 1,
            },
        )
        builder.add_node(
            "reviewer",
            lambda s: {"accepted": call("code.review", s["task"] + str(s["rounds"])) != "fail"},
        )
        builder.add_edge(START, "author")
        builder.add_edge("author", "reviewer")
        builder.add_conditional_edges(
            "reviewer", lambda s: END if s["accepted"] or s["rounds"] >= 3 else "author"
        )
    elif pattern == "hierarchical":
        builder = StateGraph(FanOutState)
        builder.add_node("plan", lambda s: {"parts": [f"{s['task']}/{i}" for i in range(3)]})
        builder.add_node("worker", lambda s: {"results": [call("code.generate", s["part"])]})
        builder.add_node("aggregate", lambda s: {"output": call("text.summarize", s["task"])})
        builder.add_edge(START, "plan")
        builder.add_conditional_edges(
            "plan", lambda s: [Send("worker", {"part": p}) for p in s["parts"]]
        )
        builder.add_edge("worker", "aggregate")
        builder.add_edge("aggregate", END)
    else:
        return {"pattern": pattern, "skipped": "no LangGraph equivalent built"}

    with (
        tempfile.TemporaryDirectory() as tmp,
        SqliteSaver.from_conn_string(str(Path(tmp) / "lg.db")) as saver,
    ):
        graph = builder.compile(checkpointer=saver)
        start = time.perf_counter()
        for i in range(sessions):
            graph.invoke({"task": f"t{i}"}, config={"configurable": {"thread_id": f"s{i}"}})
        wall = time.perf_counter() - start
    return {
        "pattern": pattern,
        "sessions": sessions,
        "steps": counter["steps"],
        "steps_per_s": counter["steps"] / wall,
    }


# -- scale --------------------------------------------------------------------------------------
def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def concurrent_sessions(n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        store = EventStore(f"sqlite:///{Path(tmp) / 'e.db'}")
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
        runtime = Runtime(
            store, registry, config=RuntimeConfig(time_scale=1.0, concurrency=n, seed=2)
        )
        for i in range(n):
            runtime.sessions.submit(
                SessionRequest(
                    task=Task(prompt=f"c{i}", capability="code.generate", complexity=0.0)
                )
            )
        in_flight = Counter()
        original = runtime.invoke

        async def counting_invoke(*args, **kwargs):
            in_flight["now"] += 1
            in_flight["peak"] = max(in_flight["peak"], in_flight["now"])
            try:
                return await original(*args, **kwargs)
            finally:
                in_flight["now"] -= 1

        runtime.invoke = counting_invoke  # type: ignore[method-assign]
        start = time.perf_counter()
        summary = asyncio.run(runtime.run_pending(batch=n))
        wall = time.perf_counter() - start
        events = store.read_all(limit=10_000_000)
        seqs: dict[str, list[int]] = {}
        for e in events:
            seqs.setdefault(e.stream_id, []).append(e.seq)
        lost = sum(max(s) - len(set(s)) for s in seqs.values())
        terminal = Counter(
            e.stream_id for e in events if e.type in ("SessionCompleted", "SessionFailed")
        )
        store.dispose()
    return {
        "sessions": n,
        "completed": len(summary.sessions),
        "peak_in_flight": in_flight["peak"],
        "wall_s": wall,
        "events_lost": lost + (n - len(terminal)),
        "duplicate_completions": sum(v - 1 for v in terminal.values()),
        "peak_rss_mb": peak_rss_mb(),
    }


def select_p95_ms(n_agents: int, queries: int) -> dict[str, Any]:
    from nofx.routing.selection import ProficiencySelector, SelectionRequest

    try:
        from nofx.routing.router import SmartRouter

        selector: Any = SmartRouter(seed=3)
        name = "SmartRouter"
    except ImportError:
        selector, name = ProficiencySelector(), "ProficiencySelector"
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
        timings = []
        for q in range(queries):
            capability = caps[q % len(caps)]
            candidates = runtime.candidates(
                "default", capability
            )  # cached after the first read, as in the runtime
            start = time.perf_counter()
            selector.rank(SelectionRequest(capability=capability, optimize="balanced"), candidates)
            timings.append((time.perf_counter() - start) * 1000)
        store.dispose()
    return {
        "selector": name,
        "agents": n_agents,
        "queries": queries,
        "select_p50_ms": percentile(timings, 50),
        "select_p95_ms": percentile(timings, 95),
    }


def bus_throughput(messages: int) -> dict[str, Any]:
    from nofx.bus import MessageBus
    from nofx.domain import Message

    with tempfile.TemporaryDirectory() as tmp:
        store = EventStore(f"sqlite:///{Path(tmp) / 'e.db'}")
        bus = MessageBus(store)
        start = time.perf_counter()
        for i in range(messages):
            bus.publish(
                Message(sender="bench", topic="session-bench", session_id="bench", body={"i": i})
            )
        persist = messages / (time.perf_counter() - start)
        start = time.perf_counter()
        replayed = list(bus.replay("topic:session-bench", from_offset=0))
        replay = len(replayed) / (time.perf_counter() - start)
        store.dispose()
    return {
        "messages": messages,
        "bus_persist_msgs_per_s": persist,
        "bus_replay_msgs_per_s": replay,
    }


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    sessions = 100 if args.quick else 500
    rows = []
    results: dict[str, Any] = {
        "steps_per_s": {},
        "langgraph_steps_per_s": {},
        "ratio_vs_langgraph": {},
    }
    for pattern in (
        PatternName.SOLO,
        PatternName.PAIR,
        PatternName.HIERARCHICAL,
        PatternName.SWARM,
    ):
        ours = nofx_steps_per_s(pattern, sessions)
        theirs = langgraph_steps_per_s(pattern.value, sessions)
        if "steps_per_s" in ours:
            results["steps_per_s"][pattern.value] = ours["steps_per_s"]
        if "steps_per_s" in theirs:
            results["langgraph_steps_per_s"][pattern.value] = theirs["steps_per_s"]
        if "steps_per_s" in ours and "steps_per_s" in theirs:
            results["ratio_vs_langgraph"][pattern.value] = (
                ours["steps_per_s"] / theirs["steps_per_s"]
            )
        rows.append(
            {
                "pattern": pattern.value,
                "nofx_steps_per_s": ours.get("steps_per_s", float("nan")),
                "langgraph_steps_per_s": theirs.get("steps_per_s", float("nan")),
                "ratio": results["ratio_vs_langgraph"].get(pattern.value, float("nan")),
                "note": ours.get("skipped") or theirs.get("skipped") or "",
            }
        )
    show("steps per second, zero-latency agents, SQLite persistence", rows)
    scale = concurrent_sessions(2_000 if args.quick else 10_000)
    show("sessions in flight at once (~1 s simulated latency)", [scale])
    results.update(
        {
            "concurrent_sessions": scale["completed"],
            "peak_in_flight": scale["peak_in_flight"],
            "peak_rss_mb": scale["peak_rss_mb"],
            "events_lost": scale["events_lost"],
            "duplicate_completions": scale["duplicate_completions"],
            "concurrent_wall_s": scale["wall_s"],
        }
    )
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
    bus = bus_throughput(2_000 if args.quick else 20_000)
    show("message bus", [bus])
    results.update({k: v for k, v in bus.items() if k.startswith("bus_")})
    results["rows"] = rows
    write(args.json, "orchestration", args.quick, results)


if __name__ == "__main__":
    main()
