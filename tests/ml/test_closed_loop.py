"""The closed-loop experiment: the same fleet and tasks for every router, breakers on simulated
time, and an oracle that no router beats on success by more than luck."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ml.closed_loop import (
    ARMS,
    START,
    SimClock,
    World,
    closed_loop,
    route,
    task_stream,
)
from nofx.agents.simulated import SimulatedProvider
from nofx.routing.router import SmartRouter


@pytest.fixture(scope="module")
def loop() -> dict:
    return closed_loop(5, train_days=5, days=2, runs_per_day=600)


def test_every_router_routes_the_same_sessions_and_the_oracle_bounds_success(loop: dict) -> None:
    assert loop["sessions"] == 2 * 600
    for name in ARMS:
        # every attempt the loop counted is a call the simulated provider really served
        assert loop[f"{name}_attempts_per_session"] * loop["sessions"] == pytest.approx(
            loop[f"{name}_calls"]
        )
        assert loop[f"{name}_cost_per_success"] > 0
    # with the hidden truth, the oracle is at least as successful, up to sampling noise
    assert loop["oracle_success_rate"] >= loop["posterior_success_rate"] - 0.01
    assert loop["predictive_regret_success"] == pytest.approx(
        loop["oracle_success_rate"] - loop["predictive_success_rate"]
    )
    for base in ("open", "posterior"):
        assert loop[f"vs_{base}_cost_per_success_reduction"] == pytest.approx(
            1 - loop["predictive_cost_per_success"] / loop[f"{base}_cost_per_success"]
        )


def test_attempts_are_the_calls_the_router_learned_from() -> None:
    start = START + timedelta(days=1)
    world = World(3, 6, start, 1)
    tasks = task_stream(3, start, 1, 120)
    clock = SimClock()
    router = SmartRouter(seed=3, clock=clock)
    provider = SimulatedProvider(seed=3, time_scale=0.0)
    sessions: list[tuple[bool, float]] = []
    out = route("posterior", world, tasks, provider, router, router, clock, sessions)
    recorded = router.stats.outcomes_seen
    assert recorded == sum(provider.calls.values())
    assert out["attempts_per_session"] * len(tasks) == pytest.approx(recorded)
    assert out["success_rate"] * len(tasks) == pytest.approx(sum(ok for ok, _ in sessions))
    assert out["cost_usd"] == pytest.approx(sum(spent for _, spent in sessions))


def test_the_world_and_tasks_are_reproducible_and_shared() -> None:
    start = START + timedelta(days=3)
    assert task_stream(9, start, 1, 50) == task_stream(9, start, 1, 50)
    assert task_stream(9, start, 1, 50) != task_stream(10, start, 1, 50)
    world = World(9, 12, start, 2)
    episode = world.episodes[0]
    served, _ = world.served(episode.agent_id, episode.start)
    assert served.version == 2  # the degraded release is served during its episode
    served, _ = world.served(episode.agent_id, episode.start - timedelta(hours=1))
    assert served.version == 1 or any(
        e.covers(episode.agent_id, episode.start - timedelta(hours=1)) for e in world.episodes
    )
    clock = SimClock()
    clock.at(START + timedelta(hours=1))
    assert clock() == 3600.0


def test_the_tiered_fleet_prices_follow_skill() -> None:
    world = World(4, 6, START, 1, fleet="tiered")
    profiles = sorted(world.profiles.values(), key=lambda p: p["price_in"])
    cheapest, dearest = profiles[0], profiles[-1]
    assert dearest["price_in"] / cheapest["price_in"] >= 15
    assert min(dearest["skill"].values()) > max(cheapest["skill"].values())
    with pytest.raises(ValueError, match="unknown fleet"):
        World(4, 6, START, 1, fleet="imaginary")


def test_like_for_like_compares_the_same_sessions_not_each_routers_own_successes() -> None:
    from ml.closed_loop import like_for_like

    # the base router loses the expensive long session for free; ours completes it:
    # its cost per success rises, yet on the sessions both completed it spent less
    base = [(True, 1.0), (True, 1.0), (False, 0.0)]
    ours = [(True, 0.8), (True, 0.8), (True, 5.0)]
    out = like_for_like(base, ours)
    per_success_base, per_success_ours = 2.0 / 2, 6.6 / 3
    assert per_success_ours > per_success_base
    assert out["both_completed_sessions"] == 2
    assert abs(out["both_completed_cost_reduction"] - 0.2) < 1e-12
    assert abs(out["stream_cost_reduction"] - (1 - 6.6 / 2.0)) < 1e-12
    assert out["only_ours_completed"] == 1 and out["only_base_completed"] == 0
