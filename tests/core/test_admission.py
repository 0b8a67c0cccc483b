"""Admission starts sessions in arrival order, a bounded number per event-loop turn."""

from __future__ import annotations

import asyncio
import gc

from hypothesis import given, settings
from hypothesis import strategies as st

from nofx.admission import Admission, admit_count, next_per_turn, relaxed_gc


@given(st.integers(min_value=-5, max_value=10_000), st.integers(min_value=-3, max_value=500))
def test_a_turn_admits_what_waits_up_to_the_cap_and_always_moves(
    waiting: int, per_turn: int
) -> None:
    n = admit_count(waiting, per_turn)
    if waiting <= 0:
        assert n == 0
    else:
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


@given(
    current=st.integers(min_value=-3, max_value=10_000),
    turn_s=st.floats(min_value=0.0, max_value=5.0, allow_nan=False),
    budget_s=st.floats(min_value=0.001, max_value=1.0, allow_nan=False),
    ceiling=st.integers(min_value=-2, max_value=10_000),
)
def test_the_cap_halves_after_a_long_turn_grows_after_a_short_one_and_stays_in_bounds(
    current: int, turn_s: float, budget_s: float, ceiling: int
) -> None:
    n = next_per_turn(current, turn_s, budget_s, ceiling)
    top = max(1, ceiling)
    if turn_s > budget_s:  # overran: halved, never below one nor above the ceiling
        assert n == min(top, max(1, current // 2))
    else:  # on time: grown by a quarter, by at least one, up to the ceiling
        assert n == min(top, max(1, current + max(1, current // 4)))


def test_the_cap_on_typical_turns() -> None:
    assert next_per_turn(64, turn_s=0.05, budget_s=0.02, ceiling=1_000) == 32
    assert next_per_turn(64, turn_s=0.01, budget_s=0.02, ceiling=1_000) == 80
    assert next_per_turn(1, turn_s=0.05, budget_s=0.02, ceiling=1_000) == 1
    assert next_per_turn(3, turn_s=0.01, budget_s=0.02, ceiling=1_000) == 4
    assert next_per_turn(900, turn_s=0.01, budget_s=0.02, ceiling=1_000) == 1_000


@settings(max_examples=20, deadline=None)
@given(sessions=st.integers(min_value=1, max_value=120), per_turn=st.integers(1, 30))
def test_queued_starts_run_in_arrival_order_only_at_their_turn(
    sessions: int, per_turn: int
) -> None:
    async def run() -> tuple[list[int], int]:
        gate = Admission(per_turn, turn_budget_s=0.05)
        started: list[int] = []
        done = asyncio.Event()

        def start(i: int) -> None:
            started.append(i)
            if len(started) == sessions:
                done.set()

        for i in range(sessions):
            gate.admit(lambda i=i: start(i))
        before = len(started)  # nothing starts before the loop turns
        await done.wait()
        gate.close()
        return started, before

    started, before = asyncio.run(run())
    assert before == 0
    assert started == list(range(sessions))


def test_nothing_starts_while_the_writer_is_backlogged() -> None:
    async def run() -> tuple[int, int]:
        backlog = [1000]
        gate = Admission(8, backlog=lambda: backlog[0], max_backlog=10)
        started: list[int] = []
        for i in range(5):
            gate.admit(lambda i=i: started.append(i))
        await asyncio.sleep(0.02)
        while_backlogged = len(started)
        backlog[0] = 0  # the writer caught up
        await asyncio.sleep(0.02)
        gate.close()
        return while_backlogged, len(started)

    while_backlogged, after = asyncio.run(run())
    assert while_backlogged == 0
    assert after == 5


def test_relaxed_collection_is_restored_after_the_outermost_use() -> None:
    before = gc.get_threshold()
    with relaxed_gc(50_000):
        inside = gc.get_threshold()
        with relaxed_gc(60_000):
            assert gc.get_threshold() == inside  # nested: the outer setting stands
        assert gc.get_threshold() == inside
    assert inside[0] == max(before[0], 50_000)
    assert gc.get_threshold() == before
    with relaxed_gc(None):
        assert gc.get_threshold() == before


def test_the_writer_reports_its_backlog(store) -> None:
    import threading

    from nofx.store.writer import Call

    assert store.writer.backlog() == 0
    entered, release = threading.Event(), threading.Event()

    def hold(tx: object) -> None:
        entered.set()
        release.wait(10)

    held = store.writer.submit(Call(hold))
    entered.wait(10)
    queued = [store.writer.submit(Call(lambda tx: None)) for _ in range(3)]
    while_held = store.writer.backlog()
    release.set()
    for future in (held, *queued):
        future.result(10)
    assert while_held == 4  # the group being committed and the three behind it
    assert store.writer.backlog() == 0
