"""A runtime in its own process, to be killed with SIGKILL by the chaos tests.

python -m tests.chaos.runtime_worker sqlite:///path/nofx.db --lease-s=1 --time-scale=0.05
"""

from __future__ import annotations

import argparse
import asyncio

from nofx.runtime import Runtime, RuntimeConfig
from nofx.store import EventStore


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("database_url")
    parser.add_argument("--worker-id", default="doomed")
    parser.add_argument("--lease-s", type=float, default=1.0)
    parser.add_argument("--time-scale", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--ledger", default=None, help="append calls and acknowledged writes")
    args = parser.parse_args(argv)
    providers = None
    if args.ledger:
        from nofx.agents import ProviderSet
        from tests.chaos.ledger import Ledger, LedgeredProviders, LedgeredStore

        ledger = Ledger(args.ledger, source=args.worker_id)
        store: EventStore = LedgeredStore(args.database_url, ledger)
        inner = ProviderSet.default(seed=args.seed, time_scale=args.time_scale)
        providers = LedgeredProviders(inner, ledger)
    else:
        store = EventStore(args.database_url)
    config = RuntimeConfig(
        worker_id=args.worker_id,
        lease_s=args.lease_s,
        time_scale=args.time_scale,
        concurrency=args.concurrency,
        seed=args.seed,
    )
    asyncio.run(Runtime(store, providers=providers, config=config).run_pending())


if __name__ == "__main__":
    main()
