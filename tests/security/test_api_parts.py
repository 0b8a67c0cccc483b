"""The parts behind issue 10's fixes, each on its own: the analysis pool, the cached store
check of /health, and the cursor secret."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest

from nofx.api import jobs, pagination
from nofx.api.compute import AnalysisPool
from nofx.api.limits import BudgetExceeded
from nofx.api.routes.health import StoreProbe, StoreUnavailable
from nofx.errors import ValidationError
from nofx.settings import Settings
from nofx.store import EventStore


def test_the_pool_answers_refuses_when_full_and_stops_work_past_budget() -> None:
    async def scenario() -> None:
        pool = AnalysisPool(workers=1, budget_s=5.0, max_waiting=1)
        pool.start()
        try:
            flow = {"name": "f", "steps": [{"id": "a", "capability": "code.generate"}]}
            result = await pool.run("analysis", jobs.analyze_job, flow, None, 2, None)
            assert result["history"] is None and result["critical_path"]
            with pytest.raises(ValidationError, match="cycle"):  # errors come back as raised
                cyclic = {
                    "name": "c",
                    "steps": [
                        {"id": "a", "capability": "code.generate", "needs": ["b"]},
                        {"id": "b", "capability": "code.generate", "needs": ["a"]},
                    ],
                }
                await pool.run("analysis", jobs.analyze_job, cyclic, None, 2, None)
            pool.budget_s = 0.2
            busy = asyncio.ensure_future(pool.run("sleep", _sleep, 3.0))
            await asyncio.sleep(0.05)
            waiting = asyncio.ensure_future(pool.run("sleep", _sleep, 0.0))
            await asyncio.sleep(0.01)
            with pytest.raises(BudgetExceeded, match="already waiting"):
                await pool.run("sleep", _sleep, 0.0)
            with pytest.raises(BudgetExceeded, match="budget"):
                await busy
            with pytest.raises(BudgetExceeded):
                await waiting
            assert pool.killed >= 1  # the one past its budget (and the waiter, if it started)
            pool.budget_s = 5.0
            assert await pool.run("sleep", _sleep, 0.0) == 0.0  # a fresh worker took over
        finally:
            pool.close()

    asyncio.run(scenario())


def _sleep(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


def test_health_says_unavailable_when_the_store_is_gone() -> None:
    unreachable = EventStore("postgresql+psycopg://nobody@127.0.0.1:1/none", migrate=False)

    async def scenario() -> None:
        with pytest.raises(StoreUnavailable, match="not reachable"):
            await StoreProbe(unreachable).last_position()

    asyncio.run(scenario())


def test_health_reads_the_store_at_most_once_per_interval(store: EventStore) -> None:
    async def scenario() -> list[int]:
        probe = StoreProbe(store, max_age_s=60)
        first = await probe.last_position()
        store.append("s-1", "test", "t", [])
        return [first, *[await probe.last_position() for _ in range(3)]]

    positions = asyncio.run(scenario())
    assert len(set(positions)) == 1


def test_the_cursor_secret_comes_from_the_env_or_one_file(tmp_path: Path) -> None:
    pagination.configure(tmp_path, Settings.from_env({}).cursor_secret)
    key = tmp_path / pagination.SECRET_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    cursor = pagination.encode({"after": "a"})
    pagination.configure(tmp_path)  # a second worker reads the same secret
    assert pagination.decode(cursor, pagination.AFTER_ID) == {"after": "a"}
    operator = Settings.from_env({pagination.SECRET_ENV: "operator-secret"})
    pagination.configure(tmp_path, operator.cursor_secret)
    with pytest.raises(ValidationError, match="not issued by this server"):
        pagination.decode(cursor, pagination.AFTER_ID)


def test_the_jobs_are_the_routes_analyses() -> None:
    """What the worker processes run, called in-process: same answers as the library."""
    from nofx.workflows.learning import StepStats
    from nofx.workflows.suggest import PreferenceModel

    flow = {
        "name": "f",
        "steps": [
            {"id": "a", "capability": "code.generate", "estimates": {"duration_s": 30}},
            {"id": "b", "capability": "code.review", "needs": ["a"]},
            {"id": "c", "capability": "code.review", "needs": ["a"]},
        ],
    }
    analysed = jobs.analyze_job(flow, {"code.generate", "code.review"}, 2, None)
    assert analysed["critical_path"][0] == "a" and analysed["history"] is None
    stats = [
        StepStats(
            capability=cap,
            agent_id=None,
            attempts=50,
            success_rate=0.9,
            p50_s=20.0,
            p90_s=40.0,
            mean_cost_usd=0.01,
        )
        for cap in ("code.generate", "code.review")
    ]
    with_history = jobs.analyze_job(flow, None, 2, stats)
    assert with_history["history"] is not None
    suggested = jobs.suggest_job(flow, None, None, PreferenceModel())
    assert set(suggested["preferences"]) and isinstance(suggested["suggestions"], list)
    assert jobs.warm_up() is True
