"""The interpreter's switch interval while sessions run: the writer thread gets the GIL back
sooner.

The runtime's event loop and its store writer share one GIL (ADR 0013). The writer
releases it around every SQLite call (each row of an ``executemany`` is a step) and must
then wait for the loop to give it back, which a busy loop does only every
``sys.getswitchinterval()`` (5 ms by default). With 10,000 sessions of 1 s calls a commit
group took a median 24-27 ms of wall time for 3 ms of the writer's CPU, and every session
waits for one group before its call starts (StepStarted is durable first). At 0.5 ms the
same groups took 16 ms and the p95 latency inflation fell from 1.44 to 1.28 in the same
conditions (ADR 0024). The loop pays a forced switch at most every interval.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from nofx.admission import NestedOverride

_SWITCH_INTERVAL: NestedOverride[float] = NestedOverride(
    sys.getswitchinterval, sys.setswitchinterval
)


@contextlib.contextmanager
def switch_interval(seconds: float | None) -> Iterator[None]:
    """Set the switch interval to ``seconds`` (never raising it) until the outermost use
    ends; ``None`` leaves it alone."""
    if seconds is None:
        yield
        return
    with _SWITCH_INTERVAL.applied(lambda saved: min(saved, seconds)):
        yield
