"""One `nofx worker` process for bench.cluster, writing the external ledger of tests/chaos.

The loop is `nofx worker`'s (claim with leases, run, wait for LISTEN/NOTIFY or a poll), with
the store and the agents wrapped so every acknowledged write and every agent call actually
made is appended to a JSON-lines ledger outside the database. bench.cluster SIGKILLs one of
these mid-run and compares the store with the ledger afterwards.

python -m bench.cluster_worker postgresql://... --worker-id w0 --ledger /tmp/ledger.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import Any

from nofx.agents import ProviderSet
from nofx.runtime import Runtime, RuntimeConfig
from nofx.store.notify import WorkSignal
from tests.chaos.ledger import Ledger, LedgeredProviders, LedgeredStore


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("database_url")
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--ledger", required=True)
    parser.add_argument("--lease-s", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--poll-s", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    ledger = Ledger(args.ledger, source=args.worker_id)
    store = LedgeredStore(args.database_url, ledger)
    providers = LedgeredProviders(ProviderSet.default(seed=args.seed, time_scale=0.0), ledger)
    config = RuntimeConfig(
        worker_id=args.worker_id,
        lease_s=args.lease_s,
        time_scale=0.0,
        concurrency=args.concurrency,
        seed=args.seed,
    )
    runtime = Runtime(store, providers=providers, config=config)
    wake = WorkSignal(store.engine)
    stop = False

    def _stop(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    print(f"worker {args.worker_id} ready", flush=True)
    sys.stdin.readline()  # "go": every worker of a run starts at once, imports done
    while not stop:
        summary = asyncio.run(runtime.run_pending(should_stop=lambda: stop))
        if not summary.sessions:
            wake.wait(args.poll_s)
    wake.close()
    stats = store.writer.stats
    print(
        json.dumps(
            {
                "worker": args.worker_id,
                "commit_groups": stats.groups,
                "operations": stats.operations,
                "writer_busy_s": round(stats.busy_s, 3),
            }
        ),
        file=sys.stderr,
        flush=True,
    )
    store.dispose()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
