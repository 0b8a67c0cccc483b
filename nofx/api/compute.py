"""Expensive analysis off the event loop, in worker processes, under a time budget.

Analysis whose cost grows with the input (``/workflows/suggest``, ``/workflows/analyze``) is
pure Python: in a thread it would still hold the GIL and slow every other request. So it
runs in a small pool of worker processes (``NOFX_API_ANALYSIS_WORKERS``, default 1). A call
waits for a free worker and must finish within ``NOFX_API_ANALYSIS_BUDGET_S`` of arriving;
past that the worker is killed (the work stops, it does not run on after the client left)
and the caller gets 503 with Retry-After. More than ``NOFX_API_ANALYSIS_MAX_WAITING``
callers waiting get 503 at once. Workers start from a forkserver, so a replacement is
ready in milliseconds, run at a lower CPU priority than the API, and die with the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from nofx.api.jobs import warm_up
from nofx.api.limits import BudgetExceeded

T = TypeVar("T")
log = logging.getLogger(__name__)
PRELOAD = ["nofx.api.jobs"]


def _context() -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        return context
    return multiprocessing.get_context("spawn")  # pragma: no cover - not on Linux


def _yield_cpu() -> None:
    """Workers run at a lower priority: on a busy host the API's event loop goes first."""
    with contextlib.suppress(OSError):  # not permitted here: equal priority then
        os.nice(10)


# how long a request waits for a worker process to start (importing the analysis code),
# apart from its own time budget
STARTUP_TIMEOUT_S = 30.0


class AnalysisPool:
    """At most ``workers`` analyses at once, each killed past ``budget_s``."""

    def __init__(self, workers: int = 1, budget_s: float = 1.5, max_waiting: int = 8) -> None:
        self.workers = max(1, workers)
        self.budget_s = budget_s
        self.max_waiting = max_waiting
        self._executor: ProcessPoolExecutor | None = None
        self._slots: asyncio.Semaphore | None = None
        self._waiting = 0
        self._ready: asyncio.Future[bool] | None = None
        self.killed = 0

    def start(self) -> None:
        """Start the workers now (the app's startup), so no call pays for their start."""
        self._ready = asyncio.ensure_future(self._warm())

    @property
    def ready(self) -> bool:
        """A worker is up (calls until then wait for it, within their budget)."""
        return self._executor is not None and self._ready is not None and self._ready.done()

    async def _warm(self) -> bool:
        loop = asyncio.get_running_loop()
        done = await loop.run_in_executor(self._pool(), warm_up)
        return done

    async def _until_ready(self, timeout_s: float) -> None:
        """Wait for a (re)started worker, within the caller's budget."""
        if self._ready is None or (self._ready.done() and self._executor is None):
            self.start()
        assert self._ready is not None
        if self._ready.done() and self._ready.exception() is not None:
            # the worker died starting: say why (a worker that can never start would otherwise
            # look like an overloaded host), then start another
            log.warning("an analysis worker died starting: %r", self._ready.exception())
            self._kill()
            self.start()
        await asyncio.wait_for(asyncio.shield(self._ready), timeout=max(0.0, timeout_s))

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=_context(), initializer=_yield_cpu
            )
        return self._executor

    def _kill(self) -> None:
        """Stop every worker now (their work is abandoned) and start afresh on the next call."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        for process in list(getattr(executor, "_processes", {}).values()):
            process.kill()
        executor.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self._kill()

    async def run(
        self, what: str, fn: Callable[..., T], *args: Any, started: float | None = None
    ) -> T:
        """``fn(*args)`` in a worker process; BudgetExceeded (503) when it cannot finish within
        the budget counted from ``started`` (``time.monotonic()`` when the request arrived)."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.workers)
        deadline = (time.monotonic() if started is None else started) + self.budget_s
        if not self.ready or self._ready is None or self._ready.exception() is not None:
            # a worker (re)starting is not this request's cost: the wait for it is bounded on
            # its own and the budget counts from when a worker is up
            waited_from = time.monotonic()
            try:
                await self._until_ready(STARTUP_TIMEOUT_S)
            except (TimeoutError, BrokenProcessPool):
                raise BudgetExceeded(
                    f"{what}: no analysis worker came up within {STARTUP_TIMEOUT_S:g} s",
                    hint="retry in a few seconds; the host may be overloaded",
                ) from None
            deadline += time.monotonic() - waited_from
        if self._waiting >= self.max_waiting:
            raise BudgetExceeded(
                f"{what}: {self._waiting} analyses are already waiting",
                hint="retry in a few seconds; the operator sets NOFX_API_ANALYSIS_WORKERS",
            )
        self._waiting += 1
        try:
            await asyncio.wait_for(
                self._slots.acquire(), timeout=max(0.0, deadline - time.monotonic())
            )
        except TimeoutError:
            raise self._over_budget(what) from None
        finally:
            self._waiting -= 1
        try:
            remaining = deadline - time.monotonic()
            if remaining <= 0.01:  # its time went by in the queue: nothing to start or kill
                raise self._over_budget(what)
            future = asyncio.get_running_loop().run_in_executor(self._pool(), fn, *args)
            try:
                return await asyncio.wait_for(future, timeout=remaining)
            except TimeoutError:
                self._kill()
                self.start()  # a fresh worker, ready before the next caller needs it
                self.killed += 1
                raise self._over_budget(what) from None
            except BrokenProcessPool:
                self._kill()
                raise BudgetExceeded(
                    f"{what}: the analysis worker stopped", hint="retry; it is restarted"
                ) from None
        finally:
            self._slots.release()

    def _over_budget(self, what: str) -> BudgetExceeded:
        return BudgetExceeded(
            f"{what} did not finish within its {self.budget_s:g} s budget and was stopped",
            hint="send a smaller workflow (fewer steps or dependencies), or ask the operator "
            "to raise NOFX_API_ANALYSIS_BUDGET_S",
        )
