"""bench.orchestration, the peer: the same graphs in LangGraph, AsyncSqliteSaver + ainvoke."""

from __future__ import annotations

import asyncio
import operator
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, TypedDict

from bench.orchestration_nofx import _rates, zero_latency_fleet
from nofx.agents import AgentCall, AgentCallError, SimulatedProvider
from nofx.registry import AgentRegistry
from nofx.store import EventStore


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
