"""bench.orchestration, the nofx side: the zero-latency fleet, a counted runtime, one timed run."""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from nofx.agents import AgentCall, ProviderSet
from nofx.domain import AgentSpec, PatternName, SessionRequest, Task
from nofx.registry import AgentRegistry
from nofx.runtime import Runtime, RuntimeConfig
from nofx.store import EventStore

CAPABILITIES = ("code.generate", "code.review", "plan.decompose", "text.summarize")


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

        super().__init__({k: Counted(p) for k, p in inner.providers.items()})


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
        selector=SmartRouter(seed=seed, explained=1),  # as the runtime's default router
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

        writer_cpu, writer_busy = stats.cpu_s, stats.busy_s
        loop_cpu = time.thread_time()
        start = time.perf_counter()
        await asyncio.gather(*(submit(i) for i in range(sessions)))
        summary = await runtime.run_pending(batch=max(concurrency, 500))
        wall = time.perf_counter() - start
        loop_cpu = time.thread_time() - loop_cpu
        writer_cpu = stats.cpu_s - writer_cpu
        writer_busy = stats.busy_s - writer_busy
        commits = stats.groups - groups_before
        events = store.count_events()
        store.dispose()
    rates = _rates(
        "nofx", pattern, sessions, len(summary.sessions), counter["calls"], wall, commits, events
    )
    # where the CPU of a step goes: the event loop's thread and the writer's (ADR 0015)
    rates["loop_cpu_us_per_step"] = loop_cpu / max(counter["calls"], 1) * 1e6
    rates["writer_cpu_us_per_step"] = writer_cpu / max(counter["calls"], 1) * 1e6
    # the writer's wall time in its groups: far above its CPU when it waits for the GIL
    # after each SQLite call, or for fsync at full (ADR 0024)
    rates["writer_busy_us_per_step"] = writer_busy / max(counter["calls"], 1) * 1e6
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
