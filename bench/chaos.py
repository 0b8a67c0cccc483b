"""Chaos: 10% of agent calls failing, one agent going dark, one runtime SIGKILLed mid-run.

A runtime process runs the burst over a shared SQLite store and is killed with
SIGKILL part way; a fresh runtime resumes after the leases expire. The store is
then audited: every stream gap-free, one outcome per attempt, one terminal event
per session, no completed step re-run, projections equal to replay. The audit
code is the chaos tests' own (tests/chaos/invariants.py).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.report import parse_args, show, write
from nofx.registry import AgentRegistry
from nofx.runtime import Runtime, RuntimeConfig
from nofx.store import EventStore
from tests.chaos.invariants import audit
from tests.chaos.scenario import (
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
        runtime = Runtime(
            store, registry, config=RuntimeConfig(time_scale=0.0, lease_s=1.0, seed=seed)
        )
        submit_burst(runtime.sessions, sessions)
        start = time.perf_counter()
        doomed = start_runtime_process(url, lease_s=1.0, time_scale=0.02, concurrency=16, seed=seed)
        kill_after = kill_when(doomed, lambda: terminal_count(store) >= sessions // 3)
        passes = asyncio.run(run_until_terminal(runtime, sessions, deadline_s=600))
        wall = time.perf_counter() - start
        result = audit(store)
        store.dispose()
    return {
        "sessions": sessions,
        "killed_after_s": kill_after,
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
        "runs": runs,
    }
    write(args.json, "chaos", args.quick, results)


if __name__ == "__main__":
    main()
