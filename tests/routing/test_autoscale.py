"""The scaling rule: what a pool of replicas should do for a given load, and when it must wait."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nofx.routing.autoscale import (
    PolicyError,
    PoolSignal,
    ScalingPolicy,
    decide,
    desired_replicas,
)

POLICY = ScalingPolicy(min_replicas=1, max_replicas=10, target_utilisation=0.5)


def signal(replicas: int = 2, in_flight: int = 0, queued: int = 0, **kw: object) -> PoolSignal:
    return PoolSignal(
        replicas=replicas,
        per_replica_concurrency=4,
        in_flight=in_flight,
        queued=queued,
        now=1_000.0,
        **kw,  # type: ignore[arg-type]
    )


def test_a_queue_scales_the_pool_up_to_meet_the_target_utilisation() -> None:
    # 8 running + 12 waiting = 20 calls; at 50% of 4 per replica that is 10 replicas
    decision = decide(POLICY, signal(replicas=2, in_flight=8, queued=12))
    assert decision is not None
    assert (decision.before, decision.after, decision.direction) == (2, 10, "up")
    assert "queued 12" in decision.reason


def test_the_pool_never_grows_past_max_replicas_and_says_so() -> None:
    decision = decide(POLICY, signal(replicas=2, in_flight=8, queued=400))
    assert decision is not None and decision.after == 10
    assert "max_replicas" in decision.reason


def test_an_idle_pool_shrinks_by_at_most_half_at_a_time_down_to_min() -> None:
    sizes = [8]
    while True:
        decision = decide(POLICY, signal(replicas=sizes[-1]))
        if decision is None:
            break
        sizes.append(decision.after)
    assert sizes == [8, 4, 2, 1]


def test_cooldowns_hold_a_decision_back() -> None:
    busy = signal(replicas=2, in_flight=8, queued=12, last_scaled_at=990.0)
    assert decide(POLICY, busy) is None  # scaled 10 s ago, scale-up cooldown is 15 s
    idle = signal(replicas=8, last_scaled_at=980.0)
    assert decide(POLICY, idle) is None  # 20 s ago, scale-down cooldown is 60 s
    assert decide(POLICY, signal(replicas=8, last_scaled_at=900.0)) is not None


def test_load_within_the_tolerance_band_does_not_flap() -> None:
    # 4 calls on 2 replicas of 4 = 50%: on target; 5 calls = 62.5% is outside 10% tolerance
    assert decide(POLICY, signal(replicas=2, in_flight=4)) is None
    assert decide(POLICY, signal(replicas=2, in_flight=5)) is not None


def test_slow_answers_add_a_replica_even_when_the_arithmetic_says_enough() -> None:
    policy = ScalingPolicy(max_replicas=5, target_utilisation=0.5, latency_target_ms=1000)
    decision = decide(policy, signal(replicas=2, in_flight=4, p95_latency_ms=2500.0))
    assert decision is not None and decision.after == 3
    assert "p95 latency 2500 ms" in decision.reason
    # fast answers at the same load: nothing to do
    assert decide(policy, signal(replicas=2, in_flight=4, p95_latency_ms=900.0)) is None


def test_a_pool_outside_new_bounds_moves_into_them_at_once() -> None:
    tight = ScalingPolicy(min_replicas=3, max_replicas=4)
    decision = decide(tight, signal(replicas=1, last_scaled_at=999.0))
    assert decision is not None and decision.after == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_replicas": 5, "max_replicas": 2}, "above max_replicas"),
        ({"target_utilisation": 1.5}, "target_utilisation"),
        ({"latency_target_ms": 0}, "latency_target_ms"),
        ({"scale_up_cooldown_s": -1}, "cooldowns"),
        ({"max_replicas": 0}, "max_replicas"),
    ],
)
def test_a_policy_that_cannot_work_is_refused_with_what_to_change(
    kwargs: dict, message: str
) -> None:
    with pytest.raises(PolicyError, match=message):
        ScalingPolicy(**kwargs)


def test_a_policy_survives_a_round_trip_through_json() -> None:
    policy = ScalingPolicy(min_replicas=2, max_replicas=6, latency_target_ms=800)
    assert ScalingPolicy.from_dict({**policy.as_dict(), "unknown": 1}) == policy


@given(
    min_r=st.integers(0, 5),
    extra=st.integers(0, 20),
    replicas=st.integers(0, 40),
    in_flight=st.integers(0, 500),
    queued=st.integers(0, 500),
    per_replica=st.integers(1, 16),
    target=st.floats(0.1, 1.0),
    since=st.none() | st.floats(0, 1_000),
)
def test_decisions_stay_in_bounds_and_move_towards_demand(
    min_r: int,
    extra: int,
    replicas: int,
    in_flight: int,
    queued: int,
    per_replica: int,
    target: float,
    since: float | None,
) -> None:
    policy = ScalingPolicy(
        min_replicas=min_r, max_replicas=max(1, min_r + extra), target_utilisation=target
    )
    observed = PoolSignal(
        replicas=replicas,
        per_replica_concurrency=per_replica,
        in_flight=in_flight,
        queued=queued,
        now=2_000.0,
        last_scaled_at=None if since is None else 2_000.0 - since,
    )
    decision = decide(policy, observed)
    if decision is None:
        return
    assert policy.min_replicas <= decision.after <= policy.max_replicas
    assert decision.after != decision.before
    wanted = desired_replicas(policy, observed).replicas
    # never overshoot: a step goes towards the desired size and stops at it
    if decision.after > decision.before:
        assert decision.after <= max(wanted, policy.min_replicas)
    else:
        assert decision.after >= wanted
