"""Scaling before the peak: the autoscaler's decision with the usage forecast in it.

The reactive rule (nofx.routing.autoscale.decide) sees only the calls in flight and queued
now, so a pool grows after its queue has formed. Here the demand the forecast expects within
the lead time (calls in flight at once, at its peak) counts as demand too: the pool grows
ahead of the peak and does not shrink below what the peak will need. A forecast at or under
today's demand changes nothing, so without a forecast the decision is the reactive one.
The cooldowns, bounds and tolerance band of the policy still apply.
"""

from __future__ import annotations

import math
from dataclasses import replace

from nofx.routing.autoscale import PoolSignal, ScalingDecision, ScalingPolicy, decide


def forecast_signal(signal: PoolSignal, forecast_peak: float) -> PoolSignal:
    """The signal as it will look at the forecast peak: the extra demand as queued calls."""
    demand = signal.in_flight + signal.queued
    extra = max(0, math.ceil(forecast_peak - 1e-9) - demand)
    return replace(signal, queued=signal.queued + extra)


def decide_ahead(
    policy: ScalingPolicy, signal: PoolSignal, forecast_peak: float | None
) -> ScalingDecision | None:
    """Scale the pool (or not) for the larger of today's demand and the forecast peak.

    The decision keeps the real utilisation (what the pool sees now); its reason says when
    the forecast, not the queue, asked for the replicas."""
    reactive = decide(policy, signal)
    if forecast_peak is None or not math.isfinite(forecast_peak):
        return reactive
    if forecast_peak <= signal.in_flight + signal.queued:
        return reactive
    ahead = decide(policy, forecast_signal(signal, forecast_peak))
    if ahead is None:
        # the forecast peak needs the replicas the pool has: hold rather than shrink
        return None if reactive is None or reactive.after < signal.replicas else reactive
    if reactive is not None and reactive.after >= ahead.after:
        return reactive
    return replace(
        ahead,
        reason=f"forecast peak {forecast_peak:.1f} calls in flight within the lead time: "
        + ahead.reason,
        utilisation=signal.utilisation,
    )
