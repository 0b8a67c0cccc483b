"""Cluster throughput on PostgreSQL: 1 vs 2 worker processes, one SIGKILLed mid-run.

Workers are real processes (bench/cluster_worker.py: the `nofx worker` loop) sharing one
PostgreSQL store; agents are simulated with zero latency, so the numbers measure the control
plane. For each seed: a burst of sessions is queued before any worker starts, then
- 1 worker drains it;
- 2 workers drain it, and one of them is SIGKILLed mid-run (asserted: it held sessions it
  had started and not finished, and had made agent calls) and restarted at once, as a
  supervisor would; the sessions it held are resumed by whoever claims them after their
  leases (2 s) expire.
Throughput = sessions / (last session ended - first session started), by the events' own
timestamps. Then a short open loop to the idle workers measures dispatch delay
(SessionRequested to SessionStarted).

Every worker writes an external ledger (tests/chaos/ledger.py) of every write the store
acknowledged and every agent call it actually made; after the run the store is compared
with it: ledger_mismatches (acknowledged events missing or changed, calls with no
StepStarted) must be 0; agent calls repeated because their outcome died with the worker
are counted and reported. Every seed is reported, with the mean and a 95% t-interval.
"""

from __future__ import annotations

import json
import os
import random
import statistics
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
from nofx.data_contract import StreamType
from nofx.domain import AgentSpec, SessionRequest, Task
from nofx.registry import AgentRegistry
from nofx.sessions import SessionService
from nofx.store import EventStore
from nofx.store.schema import sessions as sessions_table
from tests.chaos.ledger import compare
from tests.chaos.scenario import calls_in_flight

PG_BASE = os.environ.get("NOFX_BENCH_POSTGRES_URL") or os.environ.get(
    "NOFX_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
T_95 = {1: 12.71, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447}
LEASE_S = 2.0


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


def start_worker(url: str, home: Path, name: str, ledger: Path, seed: int) -> subprocess.Popen:
    env = {**os.environ, "NOFX_DATABASE_URL": url, "NOFX_HOME": str(home)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.cluster_worker",
            url,
            "--worker-id",
            name,
            "--ledger",
            str(ledger),
            "--lease-s",
            str(LEASE_S),
            "--concurrency",
            "128",
            "--seed",
            str(seed),
        ],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=(home / f"{name}.log").open("wb"),
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.readline()  # "ready": imported and connected, waiting for "go"
    return proc


def go(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()


def writer_stats(home: Path) -> dict[str, float]:
    """What each worker's group-commit writer reported when it stopped (killed ones say
    nothing): commit groups and the seconds its thread was busy."""
    groups = busy = 0.0
    for log in home.glob("w*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("{") and "writer_busy_s" in line:
                stats = json.loads(line)
                groups += stats["commit_groups"]
                busy += stats["writer_busy_s"]
    return {"commit_groups": groups, "writer_busy_s": busy}


def cpu_s(procs: list[subprocess.Popen]) -> float:
    """CPU seconds (user + system) the worker processes have used so far (Linux /proc)."""
    total = 0
    for p in procs:
        try:
            fields = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # it is gone (killed): its CPU before the kill was counted then
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def held_unfinished(store: EventStore, worker: str) -> int:
    """Sessions ``worker`` leased and has not finished: what its death leaves behind."""
    query = select(func.count()).where(
        sessions_table.c.lease_owner == worker, sessions_table.c.status == "running"
    )
    with store.engine.connect() as conn:
        return int(conn.execute(query).scalar() or 0)


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
    for e in store.read_all(limit=10_000_000, stream_type=StreamType.SESSION):
        if e.type == "SessionRequested":
            requested[e.stream_id] = e.occurred_at
        elif e.type == "SessionStarted" and e.stream_id in requested:
            delays.append((e.occurred_at - requested[e.stream_id]).total_seconds() * 1000)
    return delays


def burst_span_s(store: EventStore) -> float:
    """From the first session a worker started to the last one finished, by the events' own clocks."""
    started, ended = [], []
    for e in store.read_all(limit=10_000_000, stream_type=StreamType.SESSION):
        if e.type == "SessionStarted":
            started.append(e.occurred_at)
        elif e.type in ("SessionCompleted", "SessionFailed"):
            ended.append(e.occurred_at)
    return (max(ended) - min(started)).total_seconds()


def run_case(workers: int, burst: int, rate: float, seconds: float, seed: int) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="nofx-bench-cluster-"))
    url = fresh_pg_database()
    if url is None:
        return {"workers": workers, "seed": seed, "skipped": "PostgreSQL not reachable"}
    ledger = home / "ledger.jsonl"
    store = EventStore(url)
    service = seed_fleet(store)
    for i in range(burst):  # queued before any worker runs: submission is not measured
        service.submit(request(i))
    procs = [start_worker(url, home, f"w{i}", ledger, seed) for i in range(workers)]
    kill: dict[str, Any] = {}
    cpu = 0.0
    load_before = os.getloadavg()[0]
    try:
        cpu -= cpu_s(procs)
        go(procs)
        if workers > 1:
            # the victim dies somewhere in the middle of the burst, with sessions in hand
            at = random.Random(seed).uniform(0.25, 0.6) * burst
            victim = procs[-1]
            started = time.monotonic()
            while terminal_count(store) < at or held_unfinished(store, "w1") == 0:
                if time.monotonic() - started > 300:
                    raise TimeoutError("the kill point was never reached")
                time.sleep(0.02)
            cpu += cpu_s([victim])
            victim.kill()  # SIGKILL: no lease released, nothing flushed
            victim.wait(timeout=10)
            done_at_kill = terminal_count(store)
            held = held_unfinished(store, "w1")
            in_flight = calls_in_flight(store, ledger, "w1")
            assert held > 0 and done_at_kill < burst, "the kill did not land mid-run"
            kill = {
                "killed_at_fraction": done_at_kill / burst,
                "sessions_held_by_killed_worker": held,
                "calls_without_outcome_at_kill": in_flight,
            }
            procs.append(start_worker(url, home, "w1-restarted", ledger, seed))
            cpu -= cpu_s(procs[-1:])
            go(procs[-1:])
        wait_for(store, burst)
        cpu += cpu_s(procs)
        load_after = os.getloadavg()[0]
        drained = burst_span_s(store)
        before = len(dispatch_delays_ms(store))
        n_open = int(rate * seconds)
        t0 = time.perf_counter()
        for i in range(n_open):  # a fixed schedule to warm, idle workers
            pause = t0 + i / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            service.submit(request(burst + i))
        wait_for(store, burst + n_open)
        delays = dispatch_delays_ms(store)[before:]
    finally:
        stop(procs)
    writers = writer_stats(home)
    lost, duplicates = check_integrity(store)
    check = compare(ledger, store).summary()
    store.dispose()
    drop_pg_database(url)
    return {
        "workers": workers,
        "seed": seed,
        "sessions_per_s": burst / drained,
        # cores the workers got while draining the burst, and the host's load around it:
        # on a shared 2-core host this, not the store, is what bounds the workers
        "worker_cores_used": cpu / drained,
        "host_load_1m": round((load_before + load_after) / 2, 2),
        # each worker's single writer thread: ms per commit group over the whole run
        "ms_per_commit_group": 1000 * writers["writer_busy_s"] / max(1, writers["commit_groups"]),
        "p50_dispatch_ms": percentile(delays, 50),
        "p95_dispatch_ms": percentile(delays, 95),
        "killed_at_fraction": kill.get("killed_at_fraction"),
        "sessions_held_by_killed_worker": kill.get("sessions_held_by_killed_worker"),
        "calls_without_outcome_at_kill": kill.get("calls_without_outcome_at_kill"),
        "ledger_mismatches": check["ledger_mismatches"],
        "repeated_agent_calls": check["repeated_agent_calls"],
        "acknowledged_events": check["acknowledged_events"],
        "calls_executed": check["calls_executed"],
        "events_lost": lost,
        "duplicate_completions": duplicates,
    }


def interval(values: list[float]) -> dict[str, Any]:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return {"mean": mean, "ci95": [mean, mean], "n": len(values), "values": values}
    half = T_95.get(len(values) - 1, 1.96) * statistics.stdev(values) / len(values) ** 0.5
    return {"mean": mean, "ci95": [mean - half, mean + half], "n": len(values), "values": values}


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    burst = 400 if args.quick else 2000
    rate, seconds = (20.0, 2.0) if args.quick else (40.0, 5.0)
    seeds = [1, 2, 3]
    rows = []
    for seed in seeds:  # 1 and 2 workers alternate, so load on the host hits both alike
        rows += [run_case(w, burst, rate, seconds, seed) for w in (1, 2)]
    show("cluster on PostgreSQL: zero-latency simulated agents; 2 workers = one SIGKILLed", rows)
    by = {(r["workers"], r["seed"]): r for r in rows if "sessions_per_s" in r}
    ratios = [by[(2, s)]["sessions_per_s"] / by[(1, s)]["sessions_per_s"] for s in seeds]
    results = {
        "backend": "postgresql",
        "durability": os.environ.get("NOFX_DURABILITY", "full"),
        "seeds": seeds,
        "burst_sessions": burst,
        "lease_s": LEASE_S,
        "throughput_by_workers": {
            str(w): interval([by[(w, s)]["sessions_per_s"] for s in seeds]) for w in (1, 2)
        },
        "scaling_ratio_2_vs_1": interval(ratios),
        "p95_dispatch_ms": {
            str(w): interval([by[(w, s)]["p95_dispatch_ms"] for s in seeds]) for w in (1, 2)
        },
        "worker_cores_used": {
            str(w): interval([by[(w, s)]["worker_cores_used"] for s in seeds]) for w in (1, 2)
        },
        "sessions_per_core_s": {
            str(w): interval(
                [by[(w, s)]["sessions_per_s"] / by[(w, s)]["worker_cores_used"] for s in seeds]
            )
            for w in (1, 2)
        },
        "ledger_mismatches": sum(r["ledger_mismatches"] for r in by.values()),
        "repeated_agent_calls": sum(r["repeated_agent_calls"] for r in by.values()),
        "events_lost": sum(r["events_lost"] for r in by.values()),
        "duplicate_completions": sum(r["duplicate_completions"] for r in by.values()),
        "rows": rows,
    }
    show(
        "scaling",
        [
            {
                "ratio_2_vs_1_mean": results["scaling_ratio_2_vs_1"]["mean"],
                "ci95": results["scaling_ratio_2_vs_1"]["ci95"],
                "ledger_mismatches": results["ledger_mismatches"],
                "repeated_agent_calls": results["repeated_agent_calls"],
            }
        ],
    )
    write(args.json, "cluster", args.quick, results)


if __name__ == "__main__":
    main()
