"""Several `nofx worker` processes on one PostgreSQL store: one is SIGKILLed, nothing is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from nofx.domain import SessionRequest, Task
from nofx.registry import AgentRegistry
from nofx.sessions import SessionService
from nofx.store import EventStore
from nofx.store.schema import sessions as sessions_table
from tests.conftest import fleet_specs

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def start_worker(url: str, home: Path, name: str, lease_s: float) -> subprocess.Popen:
    env = {**os.environ, "NOFX_DATABASE_URL": url, "NOFX_HOME": str(home)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nofx.cli",
            "worker",
            "--worker-id",
            name,
            "--lease-s",
            str(lease_s),
            "--time-scale",
            "0.01",
            "--poll-s",
            "0.5",
            "--max-idle-polls",
            "12",
            "--concurrency",
            "64",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def terminal_count(store: EventStore) -> int:
    query = select(func.count()).where(
        sessions_table.c.status.in_(["succeeded", "failed", "cancelled"])
    )
    with store.engine.connect() as conn:
        return int(conn.execute(query).scalar() or 0)


def test_three_workers_one_killed_every_session_finishes_exactly_once(
    pg_url: str, tmp_path: Path
) -> None:
    store = EventStore(pg_url)
    registry = AgentRegistry(store)
    for spec in fleet_specs(6):
        registry.register(spec)
    service = SessionService(store, registry)
    total = 1000
    for i in range(total):
        service.submit(
            SessionRequest(
                task=Task(prompt=f"t{i}", capability="code.generate", complexity=(i % 10) / 10)
            )
        )

    workers = {
        name: start_worker(pg_url, tmp_path, name, lease_s=5.0) for name in ("w1", "w2", "w3")
    }
    deadline = time.monotonic() + 240

    def w1_mid_session() -> int:
        """Sessions w1 has started and not finished: what the kill must catch."""
        with store.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).where(
                        sessions_table.c.lease_owner == "w1",
                        sessions_table.c.status == "running",
                    )
                ).scalar()
                or 0
            )

    # a quarter done, and w1 caught mid-session (a worker that started late, or sits between
    # two batches, holds nothing to take over)
    victim_leases = 0
    while time.monotonic() < deadline:
        if terminal_count(store) >= total * 0.25 and (victim_leases := w1_mid_session()) > 0:
            break
        time.sleep(0.02)
    os.killpg(workers["w1"].pid, signal.SIGKILL)
    workers["w1"].wait()
    while terminal_count(store) < total and time.monotonic() < deadline:
        time.sleep(0.2)
    for name in ("w2", "w3"):
        workers[name].send_signal(signal.SIGTERM)
    for name in ("w2", "w3"):
        try:
            workers[name].wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover - diagnostic
            workers[name].kill()
            pytest.fail(f"{name} did not stop: {workers[name].stderr.read().decode()[-2000:]}")

    assert terminal_count(store) == total, "every session must reach a terminal state"
    events = store.read_all(limit=1_000_000)
    # no lost or duplicated event: every stream is numbered 1..n without a gap
    by_stream: dict[str, list[int]] = {}
    for e in events:
        by_stream.setdefault(e.stream_id, []).append(e.seq)
    assert all(seqs == list(range(1, len(seqs) + 1)) for seqs in by_stream.values())
    session_events = [e for e in events if e.stream_type == "session"]
    terminal = Counter(
        e.stream_id for e in session_events if e.type in ("SessionCompleted", "SessionFailed")
    )
    assert len(terminal) == total and set(terminal.values()) == {1}, (
        "exactly one completion per session"
    )
    outcomes = Counter(
        (e.stream_id, e.payload["step_id"], e.payload["attempt"])
        for e in session_events
        if e.type in ("StepCompleted", "StepFailed", "StepAbandoned")
    )
    assert set(outcomes.values()) == {1}, "one outcome per attempt"
    # the survivors took over what w1 held when it died
    resumed = [
        e
        for e in session_events
        if e.type == "SessionResumed" and e.payload["previous_worker_id"] == "w1"
    ]
    assert victim_leases > 0
    assert len(resumed) >= 1
    assert {e.payload["worker_id"] for e in resumed} <= {"w2", "w3"}
    finishers = Counter(
        e.payload.get("worker_id")
        for e in session_events
        if e.type in ("SessionStarted", "SessionResumed")
    )
    assert finishers["w2"] > 0 and finishers["w3"] > 0
    store.dispose()
