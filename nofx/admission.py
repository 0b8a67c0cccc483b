"""Admission: start sessions a few per event-loop turn, so steps already running never wait.

Ten thousand claimed sessions started at once each run their first piece (parse, choose an
agent, queue StepStarted) before the loop gets back to anything else: a call that ended
meanwhile waits seconds for its completion to be handled, and a 1 s call looks like a 5 s
one (ADR 0015). The ``Admission`` gate lets at most ``per_turn`` sessions start per turn
of the loop; whatever became ready in between (answers of running calls, commits) runs
first. A session waiting here has no StepStarted yet, so no call of it is in flight.

With a ``turn_budget_s`` the cap follows the loop: it shrinks when a turn ran longer than
the budget and grows while turns stay short, so a fast host starts thousands of sessions
per turn and a loaded one few, and no turn holds the loop much past the budget.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import time
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar


def admit_count(waiting: int, per_turn: int) -> int:
    """How many of ``waiting`` sessions start this turn: all of them up to ``per_turn``
    (at least one, so the queue always moves)."""
    if waiting <= 0:
        return 0
    return min(waiting, max(1, per_turn))


def next_per_turn(current: int, turn_s: float, budget_s: float, ceiling: int) -> int:
    """The cap for the next turn: halved when the last turn overran the budget, else grown by
    a quarter (at least one), always within 1..ceiling."""
    ceiling = max(1, ceiling)
    if turn_s > budget_s:
        return max(1, min(ceiling, current // 2))
    return max(1, min(ceiling, current + max(1, current // 4)))


class Admission:
    """A FIFO gate opened ``per_turn`` at a time by one pump that yields a turn between."""

    def __init__(
        self,
        per_turn: int = 64,
        *,
        turn_budget_s: float | None = None,
        ceiling: int = 4096,
        backlog: Callable[[], int] | None = None,
        max_backlog: int = 256,
    ) -> None:
        self.per_turn = per_turn
        # the store writer's queue: a session admitted while it is long stamps StepStarted
        # and then waits for the writer before its call can start (ADR 0015)
        self.backlog = backlog
        self.max_backlog = max_backlog
        self.backlog_waits = 0
        self.turn_budget_s = turn_budget_s
        self.ceiling = ceiling
        self._waiting: collections.deque[asyncio.Future[None] | Callable[[], object]] = (
            collections.deque()
        )
        self._pump: asyncio.Task[None] | None = None
        self.turns = 0
        self.admitted = 0

    async def enter(self) -> None:
        """Wait for this caller's turn to start (first come, first started)."""
        loop = asyncio.get_running_loop()
        ticket: asyncio.Future[None] = loop.create_future()
        self._waiting.append(ticket)
        if self._pump is None or self._pump.done():
            self._pump = loop.create_task(self._run())
        await ticket

    def admit(self, start: Callable[[], object]) -> None:
        """Queue ``start`` to be called at this caller's turn, in the same FIFO as ``enter``:
        nothing runs (no task exists) until then, so ten thousand queued sessions cost the
        loop nothing while they wait."""
        self._waiting.append(start)
        if self._pump is None or self._pump.done():
            self._pump = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        waiting = self._waiting
        while waiting:
            if self.backlog is not None and self.backlog() > self.max_backlog:
                self.backlog_waits += 1
                await asyncio.sleep(0.002)  # let the writer catch up before more start
                continue
            opened = 0
            for _ in range(admit_count(len(waiting), self.per_turn)):
                ticket = waiting.popleft()
                if callable(ticket):
                    ticket()
                    opened += 1
                elif not ticket.done():  # a cancelled waiter gives its place up
                    ticket.set_result(None)
                    opened += 1
            self.admitted += opened
            self.turns += 1
            began = time.perf_counter()
            await asyncio.sleep(0)  # one turn: what is ready now runs before the next starts
            if self.turn_budget_s is not None:
                turn_s = time.perf_counter() - began
                self.per_turn = next_per_turn(
                    self.per_turn, turn_s, self.turn_budget_s, self.ceiling
                )

    def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()


T = TypeVar("T")


class NestedOverride(Generic[T]):
    """A process-wide interpreter setting changed while at least one run needs it: the
    outermost use applies its change, nested uses share it, and the last one out restores
    what was there before (the GC thresholds here, the switch interval in runtime.gil)."""

    def __init__(self, read: Callable[[], T], write: Callable[[T], None]) -> None:
        self._read, self._write = read, write
        self._depth = 0
        self._saved: T | None = None

    @contextlib.contextmanager
    def applied(self, change: Callable[[T], T]) -> Iterator[None]:
        if self._depth == 0:
            self._saved = self._read()
            self._write(change(self._saved))
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0 and self._saved is not None:
                self._write(self._saved)
                self._saved = None


_GC_THRESHOLDS: NestedOverride[tuple[int, ...]] = NestedOverride(
    gc.get_threshold, lambda thresholds: gc.set_threshold(*thresholds)
)


@contextlib.contextmanager
def relaxed_gc(young_threshold: int | None) -> Iterator[None]:
    """Collect the young generation less often while sessions run (restored after the last
    of nested uses). Each collection of the oldest generation walks every live object: with
    10,000 sessions in flight that was up to 1.5 s per pass and most of the run's CPU, and
    the default young threshold (700 allocations) triggered one every few seconds."""
    if young_threshold is None:
        yield
        return

    def relax(saved: tuple[int, ...]) -> tuple[int, ...]:
        gen0, gen1, gen2 = saved
        return (max(gen0, young_threshold), gen1, max(gen2, 100))

    with _GC_THRESHOLDS.applied(relax):
        yield
