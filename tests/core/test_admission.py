"""Admission starts sessions in arrival order, a bounded number per event-loop turn."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from nofx.admission import Admission, admit_count


@given(st.integers(min_value=-5, max_value=10_000), st.integers(min_value=-3, max_value=500))
def test_a_turn_admits_what_waits_up_to_the_cap_and_always_moves(
    waiting: int, per_turn: int
) -> None:
    n = admit_count(waiting, per_turn)
    if waiting <= 0:
        assert n == 0
    else:
        assert 1 <= n <= waiting
        assert n <= max(1, per_turn)
        assert n == min(waiting, max(1, per_turn))


@settings(max_examples=30, deadline=None)
@given(
    sessions=st.integers(min_value=1, max_value=200),
    per_turn=st.integers(min_value=1, max_value=40),
)
def test_sessions_start_in_arrival_order_and_no_turn_starts_more_than_the_cap(
    sessions: int, per_turn: int
) -> None:
    async def run() -> tuple[list[int], list[int]]:
        gate = Admission(per_turn)
        started: list[int] = []
        per_turn_counts: list[int] = []
        turn = 0

        async def ticker() -> None:
            nonlocal turn
            while True:
                per_turn_counts.append(0)
                turn += 1
                await asyncio.sleep(0)

        async def session(i: int) -> None:
            await gate.enter()
            started.append(i)
            if per_turn_counts:
                per_turn_counts[-1] += 1

        tick = asyncio.ensure_future(ticker())
        await asyncio.gather(*(session(i) for i in range(sessions)))
        tick.cancel()
        gate.close()
        return started, per_turn_counts

    started, counts = asyncio.run(run())
    assert started == list(range(sessions))
    assert max(counts, default=0) <= per_turn


async def test_a_runtime_with_admission_runs_every_claimed_session(store, registry) -> None:
    from nofx.domain import AgentSpec, SessionRequest, SessionStatus, Task
    from nofx.runtime import Runtime, RuntimeConfig

    registry.register(
        AgentSpec(
            name="a",
            capabilities=[{"name": "code.generate"}],
            provider={"config": {"error_rate": 0.0, "rate_limit_rate": 0.0}},
        )
    )
    runtime = Runtime(store, registry, config=RuntimeConfig(time_scale=0.0, starts_per_turn=2))
    ids = {
        runtime.sessions.submit(
            SessionRequest(task=Task(prompt=f"p{i}", capability="code.generate"))
        ).session_id
        for i in range(7)
    }
    summary = await runtime.run_pending()
    assert {s.session_id for s in summary.sessions} == ids
    assert all(s.status.terminal for s in summary.sessions)
    assert not summary.interrupted
    assert SessionStatus.SUCCEEDED in {s.status for s in summary.sessions}
