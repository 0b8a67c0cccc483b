"""Admission: start sessions a few per event-loop turn, so steps already running never wait.

Ten thousand claimed sessions started at once each run their first piece (parse, choose an
agent, queue StepStarted) before the loop gets back to anything else: a call that ended
meanwhile waits seconds for its completion to be handled, and a 1 s call looks like a 5 s
one (ADR 0015). The ``Admission`` gate lets at most ``per_turn`` sessions start per turn
of the loop; whatever became ready in between (answers of running calls, commits) runs
first. A session waiting here has no StepStarted yet, so no call of it is in flight.
"""

from __future__ import annotations

import asyncio
import collections


def admit_count(waiting: int, per_turn: int) -> int:
    """How many of ``waiting`` sessions start this turn: all of them up to ``per_turn``
    (at least one, so the queue always moves)."""
    if waiting <= 0:
        return 0
    return min(waiting, max(1, per_turn))


class Admission:
    """A FIFO gate opened ``per_turn`` at a time by one pump that yields a turn between."""

    def __init__(self, per_turn: int = 64) -> None:
        self.per_turn = per_turn
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
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

    async def _run(self) -> None:
        waiting = self._waiting
        while waiting:
            opened = 0
            for _ in range(admit_count(len(waiting), self.per_turn)):
                ticket = waiting.popleft()
                if not ticket.done():  # a cancelled waiter gives its place up
                    ticket.set_result(None)
                    opened += 1
            self.admitted += opened
            self.turns += 1
            await asyncio.sleep(0)  # one turn: what is ready now runs before the next starts

    def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
