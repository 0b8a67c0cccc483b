"""Cluster throughput: sessions/s and dispatch delay for 1, 2 and 4 `nofx worker` processes.

Workers are real processes sharing one store (PostgreSQL, and the SQLite embedded
default for comparison). Agents are simulated with zero latency, so the numbers
measure the control plane, not the agents. Two phases per worker count:
- burst: N sessions are queued before the workers start; throughput = N / (last
  session finished - first session started), by the events' own timestamps;
- open loop: sessions are then submitted at a fixed rate to idle workers; the
  delay from SessionRequested to SessionStarted is the dispatch delay (wake-up
  + claim).
Afterwards every stream is checked for gaps and every session for exactly one
terminal event (`events_lost`, `duplicate_completions`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select

from bench.report import parse_args, percentile, show, write
from nofx.domain import AgentSpec, SessionRequest, Task
from nofx.registry import AgentRegistry
from nofx.sessions import SessionService
from nofx.store import EventStore
from nofx.store.schema import sessions as sessions_table

PG_BASE = os.environ.get("NOFX_BENCH_POSTGRES_URL") or os.environ.get(
    "NOFX_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def fresh_pg_database() -> str | None:
    name = f"nofx_bench_{uuid.uuid4().hex[:10]}"
    try:
        admin = create_engine(
            PG_BASE.replace("postgresql://", "postgresql+psycopg://", 1),
            isolation_level="AUTOCOMMIT",
        )
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        admin.dispose()
    except Exception as exc:  # pragma: no cover - depends on the machine
        print(f"PostgreSQL not reachable at {PG_BASE}: {exc}")
        return None
    return PG_BASE.rsplit("/", 1)[0] + "/" + name


def drop_pg_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = create_engine(
        PG_BASE.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def seed_fleet(store: EventStore) -> SessionService:
    registry = AgentRegistry(store)
    for i in range(4):
        registry.register(
            AgentSpec(
                name=f"zero-{i}",
                capabilities=[{"name": "code.generate", "proficiency": 2 + i % 3}],
                pricing={"input_per_1k_tokens": 0.0005 * (i + 1)},
                provider={
                    "config": {"latency_median_ms": 0.0, "error_rate": 0.0, "rate_limit_rate": 0.0}
                },
                max_concurrency=10_000,
            )
        )
    return SessionService(store, registry)


def request(i: int) -> SessionRequest:
    return SessionRequest(task=Task(prompt=f"b{i}", capability="code.generate", complexity=0.2))


def terminal_count(store: EventStore) -> int:
    q = select(func.count()).where(
        sessions_table.c.status.in_(["succeeded", "failed", "cancelled"])
    )
    with store.engine.connect() as conn:
        return int(conn.execute(q).scalar() or 0)


def start_workers(url: str, home: Path, n: int) -> list[subprocess.Popen]:
    env = {**os.environ, "NOFX_DATABASE_URL": url, "NOFX_HOME": str(home)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nofx.cli",
                "worker",
                "--worker-id",
                f"w{i}",
                "--time-scale",
                "0",
                "--poll-s",
                "0.2",
                "--concurrency",
                "128",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for i in range(n)
    ]
    for p in procs:  # wait until each prints its first line, i.e. is ready
        assert p.stdout is not None
        p.stdout.readline()
    return procs


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()


def wait_for(store: EventStore, target: int, timeout: float = 600) -> float:
    start = time.perf_counter()
    while terminal_count(store) < target:
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"only {terminal_count(store)}/{target} sessions finished")
        time.sleep(0.05)
    return time.perf_counter() - start


def check_integrity(store: EventStore) -> tuple[int, int]:
    events = store.read_all(limit=10_000_000)
    seqs: dict[str, list[int]] = {}
    for e in events:
        seqs.setdefault(e.stream_id, []).append(e.seq)
    lost = sum(len(range(1, max(s) + 1)) - len(set(s)) for s in seqs.values())
    terminal = Counter(
        e.stream_id for e in events if e.type in ("SessionCompleted", "SessionFailed")
    )
    duplicates = sum(n - 1 for n in terminal.values() if n > 1)
    return lost, duplicates


def dispatch_delays_ms(store: EventStore) -> list[float]:
    requested: dict[str, Any] = {}
    delays = []
    for e in store.read_all(limit=10_000_000, stream_type="session"):
        if e.type == "SessionRequested":
            requested[e.stream_id] = e.occurred_at
        elif e.type == "SessionStarted" and e.stream_id in requested:
            delays.append((e.occurred_at - requested[e.stream_id]).total_seconds() * 1000)
    return delays


def burst_span_s(store: EventStore) -> float:
    """From the first session a worker started to the last one finished, by the events' own clocks."""
    started, ended = [], []
    for e in store.read_all(limit=10_000_000, stream_type="session"):
        if e.type == "SessionStarted":
            started.append(e.occurred_at)
        elif e.type in ("SessionCompleted", "SessionFailed"):
            ended.append(e.occurred_at)
    return (max(ended) - min(started)).total_seconds()


def run_case(
    backend: str, workers: int, burst: int, open_loop_rate: float, open_loop_s: float
) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="nofx-bench-"))
    if backend == "postgresql":
        url = fresh_pg_database()
        if url is None:
            return {"backend": backend, "workers": workers, "skipped": "PostgreSQL not reachable"}
    else:
        url = f"sqlite:///{home / 'nofx.db'}"
    store = EventStore(url)
    service = seed_fleet(store)
    # burst: queue everything before any worker runs, so submission speed is not measured
    for i in range(burst):
        service.submit(request(i))
    procs = start_workers(url, home, workers)
    try:
        wait_for(store, burst)
        drained = burst_span_s(store)
        # open loop: a fixed schedule to warm, idle workers, so queueing would show
        delays_before = len(dispatch_delays_ms(store))
        n_open = int(open_loop_rate * open_loop_s)
        t0 = time.perf_counter()
        for i in range(n_open):
            due = t0 + i / open_loop_rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            service.submit(request(burst + i))
        wait_for(store, burst + n_open)
        delays = dispatch_delays_ms(store)[delays_before:]
    finally:
        stop(procs)
    lost, duplicates = check_integrity(store)
    store.dispose()
    if backend == "postgresql":
        drop_pg_database(url)
    return {
        "backend": backend,
        "workers": workers,
        "sessions_per_s": burst / drained,
        "p50_dispatch_ms": percentile(delays, 50),
        "p95_dispatch_ms": percentile(delays, 95),
        "events_lost": lost,
        "duplicate_completions": duplicates,
    }


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    burst = 300 if args.quick else 2000
    rate, seconds = (20.0, 2.0) if args.quick else (40.0, 5.0)
    cases = [("postgresql", w) for w in (1, 2, 4)] + [("sqlite", w) for w in (1, 2)]
    if args.quick:
        cases = [("postgresql", 1), ("postgresql", 2), ("sqlite", 1)]
    rows = [run_case(backend, w, burst, rate, seconds) for backend, w in cases]
    show("cluster: zero-latency simulated agents", rows)
    pg = {r["workers"]: r for r in rows if r["backend"] == "postgresql" and "sessions_per_s" in r}
    sqlite = {r["workers"]: r for r in rows if r["backend"] == "sqlite" and "sessions_per_s" in r}
    results = {
        "throughput_by_workers": {str(w): r["sessions_per_s"] for w, r in pg.items()},
        "p95_dispatch_ms": {str(w): r["p95_dispatch_ms"] for w, r in pg.items()},
        "sqlite_throughput_by_workers": {str(w): r["sessions_per_s"] for w, r in sqlite.items()},
        "sqlite_p95_dispatch_ms": {str(w): r["p95_dispatch_ms"] for w, r in sqlite.items()},
        "scaling_ratio_2_vs_1": (pg[2]["sessions_per_s"] / pg[1]["sessions_per_s"])
        if 1 in pg and 2 in pg
        else None,
        "pg_vs_sqlite_1_worker": (pg[1]["sessions_per_s"] / sqlite[1]["sessions_per_s"])
        if 1 in pg and 1 in sqlite
        else None,
        "events_lost": sum(r.get("events_lost", 0) for r in rows),
        "duplicate_completions": sum(r.get("duplicate_completions", 0) for r in rows),
        "burst_sessions": burst,
        "rows": rows,
    }
    write(args.json, "cluster", args.quick, results)


if __name__ == "__main__":
    main()
