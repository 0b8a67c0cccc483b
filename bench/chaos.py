"""Chaos: 10% of agent calls failing, one agent going dark, one runtime SIGKILLed mid-run.

A runtime process runs the burst over a shared SQLite store and is killed with
SIGKILL while agent calls are in flight (asserted: calls in the ledger without an
outcome in the store at the kill); a fresh runtime resumes after the leases
expire. Both write an external ledger (tests/chaos/ledger.py): every agent call
really made and every write the store acknowledged. After recovery the store is
compared with the ledger (ledger_mismatches: acknowledged events missing or
changed, calls the store has no StepStarted for; must be 0) and calls made again
because their outcome died with the worker are counted (repeated_agent_calls).
The store is also audited (tests/chaos/invariants.py): streams gap-free, one
outcome per attempt, one terminal event per session, projections equal to replay.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.report import parse_args, show, write
from nofx.agents import ProviderSet
from nofx.registry import AgentRegistry
from nofx.runtime import Runtime, RuntimeConfig
from nofx.sessions import SessionService
from nofx.store import EventStore
from tests.chaos.invariants import audit
from tests.chaos.ledger import Ledger, LedgeredProviders, LedgeredStore, compare
from tests.chaos.scenario import (
    calls_in_flight,
    faulty,
    kill_when,
    register_fleet,
    run_until_terminal,
    start_runtime_process,
    submit_burst,
    terminal_count,
)


def scenario(sessions: int, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'nofx.db'}"
        store = EventStore(url)
        registry = AgentRegistry(store)

        def tweak(index: int) -> dict[str, Any]:
            config = faulty(0.10)  # 10% of calls fail with an agent error
            if index == 5:
                config["dark_after_calls"] = 10  # goes dark mid-run
            return config

        register_fleet(registry, tweak)
        submit_burst(SessionService(store, registry), sessions)
        ledger_path = Path(tmp) / "ledger.jsonl"
        start = time.perf_counter()
        doomed = start_runtime_process(
            url, lease_s=1.0, time_scale=0.02, concurrency=16, seed=seed, ledger=ledger_path
        )
        kill_after = kill_when(
            doomed,
            lambda: (
                terminal_count(store) >= sessions // 3
                and calls_in_flight(store, ledger_path, "doomed") > 0
            ),
        )
        in_flight = calls_in_flight(store, ledger_path, "doomed")
        assert in_flight > 0, "the kill did not land mid-session"
        ledger = Ledger(ledger_path, source="rescuer")
        rescuer_store = LedgeredStore(url, ledger)
        runtime = Runtime(
            rescuer_store,
            providers=LedgeredProviders(ProviderSet.default(seed=seed, time_scale=0.0), ledger),
            config=RuntimeConfig(worker_id="rescuer", time_scale=0.0, lease_s=1.0, seed=seed),
        )
        passes = asyncio.run(run_until_terminal(runtime, sessions, deadline_s=600))
        wall = time.perf_counter() - start
        rescuer_store.dispose()
        result = audit(store)
        check = compare(ledger_path, store)
        store.dispose()
    return {
        "sessions": sessions,
        "killed_after_s": kill_after,
        "calls_in_flight_at_kill": in_flight,
        **check.summary(),
        "resume_passes": passes,
        "wall_s": wall,
        "session_failure_rate": result.session_failure_rate,
        "violations": len(result.violations),
        **result.summary(),
    }


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    runs = [
        scenario(300 if args.quick else 2000, seed) for seed in ((1,) if args.quick else (1, 2, 3))
    ]
    show("chaos: 10% agent errors, one agent dark, one runtime SIGKILLed", runs)
    results = {
        "session_failure_rate": max(r["session_failure_rate"] for r in runs),
        "session_failure_rate_target": 0.01,
        "events_lost": sum(r["events_lost"] for r in runs),
        "duplicate_completions": sum(r["duplicate_completions"] for r in runs),
        "steps_rerun_after_completion": sum(r["steps_rerun_after_completion"] for r in runs),
        "projection_mismatches": sum(r["projection_mismatches"] for r in runs),
        "violations": sum(r["violations"] for r in runs),
        "ledger_mismatches": sum(r["ledger_mismatches"] for r in runs),
        "repeated_agent_calls": sum(r["repeated_agent_calls"] for r in runs),
        "calls_in_flight_at_kill": [r["calls_in_flight_at_kill"] for r in runs],
        "runs": runs,
    }
    write(args.json, "chaos", args.quick, results)


if __name__ == "__main__":
    main()
