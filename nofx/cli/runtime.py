"""`nofx run` and `nofx worker`: run requested sessions, once or until stopped."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated, Any

import typer

from nofx.cli.shared import console, make_runtime, open_store, run_with_progress


def run(
    time_scale: Annotated[
        float, typer.Option(help="multiply simulated latencies (0 = no sleeping)")
    ] = 1.0,
    seed: Annotated[int, typer.Option()] = 7,
) -> None:
    """Run every requested session once, then exit."""
    _, store = open_store()
    runtime = make_runtime(store, time_scale=time_scale, seed=seed)
    pending = runtime.sessions.requested_count()
    summary = run_with_progress(runtime, pending, "sessions")
    console.print(
        f"ran {len(summary.sessions)} sessions: "
        f"{summary.succeeded} succeeded, {summary.failed} failed"
    )


def worker(
    poll_s: Annotated[
        float,
        typer.Option(help="longest idle wait; PostgreSQL wakes workers at once via LISTEN/NOTIFY"),
    ] = 1.0,
    time_scale: Annotated[
        float, typer.Option(help="multiply simulated latencies (0 = no sleeping)")
    ] = 1.0,
    seed: Annotated[int, typer.Option()] = 7,
    lease_s: Annotated[
        float, typer.Option(help="seconds a claimed session stays ours without a heartbeat")
    ] = 60.0,
    concurrency: Annotated[
        int, typer.Option(min=1, help="sessions run at once by this worker")
    ] = 256,
    worker_id: Annotated[
        str | None, typer.Option(help="name in events and leases (default host:pid)")
    ] = None,
    max_idle_polls: Annotated[
        int | None, typer.Option(help="exit after this many empty polls")
    ] = None,
) -> None:
    """Run sessions until SIGTERM, claiming work with leases so several workers can share a store.

    A worker that dies leaves leases that expire after --lease-s; the others then
    resume its sessions from their events, without repeating completed steps.
    """
    _, store = open_store()
    runtime = make_runtime(store, time_scale=time_scale, seed=seed)
    runtime.config.lease_s = lease_s
    runtime.config.concurrency = concurrency
    if worker_id:
        runtime.config.worker_id = worker_id
    from nofx.store.notify import WorkSignal

    wake = WorkSignal(store.engine)
    stop = False

    def _stop(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    idle = 0
    console.print(f"worker {runtime.config.worker_id} polling {store.dialect} store")
    while not stop:
        summary = asyncio.run(runtime.run_pending(should_stop=lambda: stop))
        if summary.sessions:
            idle = 0
            console.print(f"ran {len(summary.sessions)} sessions ({summary.succeeded} ok)")
        else:
            idle += 1
            if max_idle_polls is not None and idle >= max_idle_polls:
                break
            if wake.wait(poll_s):
                idle = 0
    wake.close()
