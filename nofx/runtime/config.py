"""How a runtime is set up: its worker id, leases, concurrency, time scale and admission."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class RuntimeConfig:
    worker_id: str = field(default_factory=default_worker_id)
    lease_s: float = 60.0
    concurrency: int = 256
    time_scale: float = 1.0
    call_timeout_s: float = 60.0
    seed: int = 7
    autoscale_interval_s: float = 2.0
    # sessions started per event-loop turn (nofx.admission): the first turn's cap; with
    # ``turn_budget_s`` the cap then follows the loop so that starting sessions holds it
    # about that long per turn. Both None: every claimed session starts in one turn, which
    # at 10,000 sessions stalled the loop for seconds (ADR 0015)
    starts_per_turn: int | None = None
    turn_budget_s: float | None = 0.005
    # no session starts while the store's writer has more operations than this waiting:
    # StepStarted would be stamped and then queue behind them (ADR 0015). 64 and 5 ms
    # (were 256 and 20 ms) took latency inflation p95 at 10,000 sessions in flight from
    # 1.22-1.24 to 1.08-1.11 at equal steps/s at 256 concurrent sessions (ADR 0033)
    writer_backlog_limit: int = 64
    # while sessions run, the young generation is collected every this many allocations
    # instead of 700: with 10,000 sessions alive, full collections took most of the CPU
    # (ADR 0015); None leaves the collector as it is
    gc_young_threshold: int | None = 50_000
    # while sessions run, the interpreter's switch interval (sys.setswitchinterval): the
    # store writer waits this long at most for the GIL after each SQLite call, instead of
    # 5 ms (nofx.runtime.gil, ADR 0024); None leaves it alone
    switch_interval_s: float | None = 0.0005
