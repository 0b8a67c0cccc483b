"""The model moves an agent's posterior level by how hard this request is; it does not replace
the level (issue 11: the model alone let a short streak outvote hundreds of outcomes)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from nofx.routing.prediction import (
    MARGIN_CAP,
    MARGIN_FLOOR,
    NUMERIC,
    AgentHistory,
    BinnedTerm,
    CompactFailureModel,
    RequestScorer,
    anchored_failure,
    request_features,
)

levels = st.floats(1e-6, 1 - 1e-6)
shifts = st.floats(-30.0, 30.0)


@settings(max_examples=300, deadline=None)
@given(level=levels, z=shifts)
def test_a_typical_request_gets_the_posterior_level(level: float, z: float) -> None:
    assert math.isclose(anchored_failure(level, z, z), level, rel_tol=1e-6, abs_tol=1e-12)


@settings(max_examples=300, deadline=None)
@given(level=levels, z=shifts, dz=st.floats(0.0, 30.0), ref=shifts)
def test_a_harder_request_never_looks_safer(level: float, z: float, dz: float, ref: float) -> None:
    easy = anchored_failure(level, z, ref)
    hard = anchored_failure(level, z + dz, ref)
    assert 0.0 <= easy <= hard <= 1.0


@settings(max_examples=200, deadline=None)
@given(a=levels, b=levels, z=shifts, ref=shifts)
def test_the_posterior_order_of_two_agents_survives_the_same_request(
    a: float, b: float, z: float, ref: float
) -> None:
    # same request shift for both: the more reliable agent stays the more reliable one
    low, high = sorted((a, b))
    assert anchored_failure(low, z, ref) <= anchored_failure(high, z, ref)


def margin_model() -> CompactFailureModel:
    """Recent failures raise risk (slope 4), and so do a timeout below the expected latency
    and a fuller context window."""
    terms = tuple(
        BinnedTerm(f, (0.0,), (3.0, 0.0))
        if f == "log_timeout_margin"
        else BinnedTerm(f, (1.0,), (0.0, 9.0), slope=0.5)
        if f == "context_fill"
        else BinnedTerm(f, (), (0.0,), slope=4.0 if f == "recent_failure_rate" else 0.0)
        for f in NUMERIC
    )
    return CompactFailureModel(-4.0, terms, {"capability": {}}, 0.5, "m")


def test_the_agents_streak_cancels_and_the_requests_difficulty_remains() -> None:
    model = margin_model()
    streak, calm = AgentHistory(), AgentHistory()
    for i in range(20):
        streak.update(i < 8, 900.0)
        calm.update(False, 900.0)
    calm.update(False, 900.0)  # the same latency median for both
    typical = RequestScorer(
        model, capability="code.generate", complexity=0.4, input_tokens=1800, timeout_s=60
    )
    tight = RequestScorer(
        model, capability="code.generate", complexity=0.4, input_tokens=1800, timeout_s=0.5
    )
    shifts = []
    for history in (streak, calm):
        z_typical = typical.log_odds(4, 128_000, history)
        # a typical request: the posterior level, whatever the last twenty runs were
        assert math.isclose(anchored_failure(0.02, z_typical, z_typical), 0.02, rel_tol=1e-9)
        shifts.append(tight.log_odds(4, 128_000, history) - z_typical)
    # a 0.5 s timeout on a ~1.3 s call is harder than a typical request, by the same amount
    # for both agents: the model's view of the request, not of the streak
    assert shifts[0] > 0 and math.isclose(shifts[0], shifts[1], rel_tol=1e-9)
    assert anchored_failure(0.02, shifts[0], 0.0) > 0.2


@settings(max_examples=150, deadline=None)
@given(
    complexity=st.floats(0, 1),
    tokens=st.integers(1, 200_000),
    timeout=st.floats(0.05, 120),
    window=st.one_of(st.none(), st.integers(1_000, 200_000)),
    proficiency=st.integers(1, 5),
    outcomes=st.lists(st.tuples(st.booleans(), st.floats(10, 5_000)), max_size=40),
)
def test_the_shift_is_the_difference_of_the_two_requests_log_odds(
    complexity, tokens, timeout, window, proficiency, outcomes
) -> None:
    model = margin_model()
    history = AgentHistory()
    for failed, latency in outcomes:
        history.update(failed, latency)
    request = RequestScorer(
        model,
        capability="code.generate",
        complexity=complexity,
        input_tokens=tokens,
        timeout_s=timeout,
    )
    typical = RequestScorer(
        model, capability="code.generate", complexity=0.4, input_tokens=1800, timeout_s=60
    )
    for hist in (history, None):
        expected = request.log_odds(proficiency, window, hist) - typical.log_odds(
            proficiency, window, hist
        )
        assert math.isclose(
            request.shift_from(typical, window, hist), expected, rel_tol=1e-9, abs_tol=1e-9
        )


@settings(max_examples=200, deadline=None)
@given(
    p50_a=st.floats(50.0, 3_000.0),
    p50_b=st.floats(50.0, 3_000.0),
    complexity=st.floats(0.0, 1.0),
    timeout_s=st.floats(0.01, 3_600.0),
)
def test_a_generous_timeout_does_not_tell_agents_apart(
    p50_a: float, p50_b: float, complexity: float, timeout_s: float
) -> None:
    """Beyond MARGIN_CAP a timeout cannot fire (7x the expected latency, 5.7 sigma), so the
    margin feature is the same for a fast and a slow agent: the model cannot learn which agent
    it is from how fast it usually is, and read a harder prompt as timeout risk (ADR 0014)."""
    margins = []
    for p50 in (p50_a, p50_b):
        history = AgentHistory()
        history.update(False, p50)
        features = request_features(
            complexity=complexity,
            input_tokens=1800,
            proficiency=3,
            context_window_tokens=None,
            timeout_s=timeout_s,
            history=history,
        )
        margins.append(features["log_timeout_margin"])
        assert MARGIN_FLOOR <= features["log_timeout_margin"] <= MARGIN_CAP
    generous = [
        math.log(timeout_s * 1000 / (p50 * (1 + complexity))) >= MARGIN_CAP
        for p50 in (p50_a, p50_b)
    ]
    if all(generous):
        assert margins[0] == margins[1] == MARGIN_CAP
