"""The autoscaler scales before the forecast peak, and never below what the peak needs;
without a forecast (or with one under today's demand) it decides exactly as before."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from nofx.routing.autoscale import PoolSignal, ScalingPolicy, decide, desired_replicas
from nofx.routing.scale_ahead import decide_ahead, forecast_signal

policies = st.builds(
    lambda lo, span, target, up, down: ScalingPolicy(
        min_replicas=lo,
        max_replicas=lo + span,
        target_utilisation=target,
        scale_up_cooldown_s=up,
        scale_down_cooldown_s=down,
    ),
    st.integers(0, 4),
    st.integers(1, 12),
    st.floats(0.3, 1.0),
    st.floats(0, 60),
    st.floats(0, 300),
)
signals = st.builds(
    PoolSignal,
    replicas=st.integers(1, 16),
    per_replica_concurrency=st.integers(1, 8),
    in_flight=st.integers(0, 60),
    queued=st.integers(0, 60),
    now=st.just(1000.0),
    last_scaled_at=st.one_of(st.none(), st.floats(0, 1000)),
)
peaks = st.one_of(st.none(), st.floats(0, 300, allow_nan=False))


def after(decision, signal: PoolSignal) -> int:
    return signal.replicas if decision is None else decision.after


@given(policies, signals)
def test_without_a_forecast_the_decision_is_the_reactive_one(policy, signal) -> None:
    assert decide_ahead(policy, signal, None) == decide(policy, signal)
    demand = signal.in_flight + signal.queued
    assert decide_ahead(policy, signal, float(demand)) == decide(policy, signal)


@given(policies, signals, peaks)
def test_never_fewer_replicas_than_the_reactive_rule_scales_up_to(policy, signal, peak) -> None:
    reactive = decide(policy, signal)
    ahead = decide_ahead(policy, signal, peak)
    if reactive is not None and reactive.direction == "up":
        assert ahead is not None and ahead.after >= reactive.after


@given(policies, signals, st.floats(0, 300, allow_nan=False))
def test_never_shrinks_below_what_the_forecast_peak_needs(policy, signal, peak) -> None:
    decision = decide_ahead(policy, signal, peak)
    if decision is not None and decision.direction == "down":
        needed = desired_replicas(policy, forecast_signal(signal, peak)).replicas
        assert decision.after >= needed


@given(policies, signals, st.floats(0, 300, allow_nan=False), st.floats(0, 300, allow_nan=False))
def test_a_higher_forecast_never_means_fewer_replicas(policy, signal, low, high) -> None:
    low, high = min(low, high), max(low, high)
    assert after(decide_ahead(policy, signal, high), signal) >= after(
        decide_ahead(policy, signal, low), signal
    )


@given(policies, signals, peaks)
def test_decisions_stay_within_the_policy(policy, signal, peak) -> None:
    decision = decide_ahead(policy, signal, peak)
    inside = policy.min_replicas <= signal.replicas <= policy.max_replicas
    if decision is not None and inside:
        assert policy.min_replicas <= decision.after <= policy.max_replicas
        assert decision.utilisation == signal.utilisation  # the real load, not the forecast


def test_an_idle_pool_scales_up_before_the_peak_and_says_why() -> None:
    policy = ScalingPolicy(min_replicas=1, max_replicas=8, target_utilisation=0.5)
    idle = PoolSignal(replicas=1, per_replica_concurrency=4, in_flight=1, queued=0, now=100.0)
    assert decide(policy, idle) is None  # the queue has not formed yet
    decision = decide_ahead(policy, idle, 12.0)
    assert decision is not None and decision.after == 6  # 12 / (4 x 0.5)
    assert decision.reason.startswith("forecast peak 12.0 calls in flight")


def test_a_quiet_hour_before_a_peak_does_not_shed_replicas() -> None:
    policy = ScalingPolicy(min_replicas=1, max_replicas=8, target_utilisation=0.5)
    quiet = PoolSignal(replicas=6, per_replica_concurrency=4, in_flight=0, queued=0, now=1000.0)
    assert decide(policy, quiet).direction == "down"
    assert decide_ahead(policy, quiet, 12.0) is None
