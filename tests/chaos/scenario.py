"""Building blocks shared by the chaos tests and ``bench.chaos``: a faulty fleet, a burst of
sessions, a runtime process to kill, and a loop that resumes until every session has ended."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from nofx.domain import Agent, SessionRequest, Task
from nofx.registry import AgentRegistry
from nofx.runtime import Runtime
from nofx.sessions import SessionService
from nofx.store import EventStore
from nofx.store.schema import events as events_table
from nofx.store.schema import sessions as sessions_table
from tests.conftest import fleet_specs

REPO_ROOT = Path(__file__).resolve().parents[2]
TERMINAL = ("succeeded", "failed", "cancelled")


def register_fleet(
    registry: AgentRegistry, tweak: Callable[[int], dict[str, Any]], n: int = 6
) -> list[Agent]:
    """``fleet_specs`` with each agent's simulator config updated by ``tweak(index)``."""
    agents = []
    for index, spec in enumerate(fleet_specs(n)):
        config = {**spec.provider.config, **tweak(index)}
        provider = spec.provider.model_copy(update={"config": config})
        agents.append(registry.register(spec.model_copy(update={"provider": provider})))
    return agents


def faulty(error_rate: float = 0.1) -> dict[str, Any]:
    """A simulator config whose only failures are the injected ones (perfect skill)."""
    return {"error_rate": error_rate, "rate_limit_rate": 0.0, "skill": {"code.generate": 1.0}}


def submit_burst(sessions: SessionService, n: int, capability: str = "code.generate") -> list[str]:
    requests = (
        SessionRequest(task=Task(prompt=f"chaos task {i}", capability=capability)) for i in range(n)
    )
    return [sessions.submit(request).session_id for request in requests]


def running_count(store: EventStore) -> int:
    """Sessions started and not ended: what a kill must catch for the test to mean anything."""
    query = select(func.count()).where(sessions_table.c.status == "running")
    with store.engine.connect() as conn:
        return int(conn.execute(query).scalar() or 0)


def terminal_count(store: EventStore) -> int:
    query = select(func.count()).where(sessions_table.c.status.in_(TERMINAL))
    with store.engine.connect() as conn:
        return int(conn.execute(query).scalar() or 0)


def event_count(store: EventStore, event_type: str) -> int:
    query = select(func.count()).where(events_table.c.type == event_type)
    with store.engine.connect() as conn:
        return int(conn.execute(query).scalar() or 0)


async def run_until_terminal(runtime: Runtime, total: int, *, deadline_s: float = 30.0) -> int:
    """Run passes until every session ended; passes repeat while dead workers' leases expire."""
    give_up = time.monotonic() + deadline_s
    passes = 0
    while terminal_count(runtime.store) < total:
        if time.monotonic() > give_up:
            raise TimeoutError(
                f"only {terminal_count(runtime.store)}/{total} sessions ended in {deadline_s}s"
            )
        summary = await runtime.run_pending()
        passes += 1
        if not summary.sessions:
            await asyncio.sleep(runtime.config.lease_s / 4)
    return passes


def start_runtime_process(
    database_url: str,
    *,
    worker_id: str = "doomed",
    lease_s: float = 1.0,
    time_scale: float = 0.05,
    concurrency: int = 4,
    seed: int = 7,
    ledger: Path | None = None,
) -> subprocess.Popen[bytes]:
    """A separate Python process running ``Runtime(...).run_pending()`` with real sleeping."""
    extra = [] if ledger is None else [f"--ledger={ledger}"]
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.chaos.runtime_worker",
            database_url,
            f"--worker-id={worker_id}",
            f"--lease-s={lease_s}",
            f"--time-scale={time_scale}",
            f"--concurrency={concurrency}",
            f"--seed={seed}",
            *extra,
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def calls_in_flight(store: EventStore, ledger_path: Path, source: str) -> int:
    """Calls ``source`` made (per the ledger) that have no outcome in the store yet: a kill
    now lands mid-session, with agent calls running."""
    from tests.chaos.ledger import read_ledger

    calls = [
        e["call_id"]
        for e in read_ledger(ledger_path)
        if e["kind"] == "call" and e["source"] == source
    ]
    if not calls:
        return 0
    keys = [f"{call_id}/outcome" for call_id in calls]
    found = 0
    with store.engine.connect() as conn:
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            found += int(
                conn.execute(
                    select(func.count()).where(events_table.c.idempotency_key.in_(chunk))
                ).scalar()
                or 0
            )
    return len(calls) - found


def kill_when(
    process: subprocess.Popen[bytes], ready: Callable[[], bool], *, timeout_s: float = 60.0
) -> float:
    """SIGKILL ``process`` as soon as ``ready()``; returns the time it took. Fails if the
    process ended on its own first (then nothing was killed mid-run)."""
    started = time.monotonic()
    while not ready():
        if process.poll() is not None:
            stderr = process.stderr.read().decode() if process.stderr else ""
            raise RuntimeError(
                f"runtime process exited with {process.returncode} before the kill: {stderr[-2000:]}"
            )
        if time.monotonic() - started > timeout_s:
            process.kill()
            raise TimeoutError(f"the kill condition did not hold within {timeout_s}s")
        time.sleep(0.01)
    process.kill()  # SIGKILL: no cleanup, no lease release, nothing flushed
    process.wait(timeout=10)
    return time.monotonic() - started
