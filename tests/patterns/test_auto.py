"""Auto's choice is a pure function of the task and the predicted success of each pattern."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from nofx.domain import PatternName, Task
from nofx.patterns.auto import (
    CHOOSABLE,
    PRIOR_SESSIONS,
    PatternStats,
    choose_pattern,
    make_auto,
    predicted_success,
    prior_success,
)

stats = st.builds(lambda n, k: PatternStats(n, min(n, k)), st.integers(0, 500), st.integers(0, 500))


@given(prior=st.floats(0.02, 0.98), record=stats)
def test_prediction_lies_between_the_prior_and_the_record(prior: float, record) -> None:
    p = predicted_success(prior, record)
    if record.sessions == 0:
        assert p == prior
        return
    low, high = sorted((prior, record.success_rate))
    assert low - 1e-12 <= p <= high + 1e-12
    # the record's weight grows with its size: PRIOR_SESSIONS sessions weigh as much as the prior
    if record.sessions == PRIOR_SESSIONS:
        assert abs(p - (prior + record.success_rate) / 2) < 1e-12


@given(prior=st.floats(0.02, 0.98), n=st.integers(1, 200), k=st.integers(0, 200))
def test_one_more_success_never_lowers_the_prediction(prior: float, n: int, k: int) -> None:
    k = min(k, n)
    before = predicted_success(prior, PatternStats(n, k))
    assert predicted_success(prior, PatternStats(n + 1, k + 1)) >= before
    assert predicted_success(prior, PatternStats(n + 1, k)) <= before


@given(
    complexity=st.floats(0, 1),
    review=st.booleans(),
    history=st.dictionaries(st.sampled_from(CHOOSABLE), stats),
)
def test_without_limits_the_choice_is_the_highest_predicted_success(
    complexity: float, review: bool, history
) -> None:
    task = Task(prompt="x", capability="code.generate", complexity=complexity)
    caps = frozenset({"code.review"}) if review else frozenset()
    choice = choose_pattern(task, history=history, available_capabilities=caps)
    expected = {
        p.value: predicted_success(prior_success(p, complexity, review), history.get(p))
        for p in CHOOSABLE
    }
    assert choice.predicted == {k: round(v, 4) for k, v in expected.items()}
    assert round(expected[choice.pattern.value], 4) == max(choice.predicted.values())
    assert choice.reasons[0].startswith(f"chose {choice.pattern.value}")


def test_a_long_good_record_overrides_the_heuristic() -> None:
    hard = Task(prompt="x", capability="code.generate", complexity=0.95)
    assert choose_pattern(hard).pattern is not PatternName.SOLO
    solo_works = {PatternName.SOLO: PatternStats(200, 196)}
    choice = choose_pattern(hard, history=solo_works)
    assert choice.pattern is PatternName.SOLO
    assert any("196" in r or "98%" in r for r in choice.reasons)


class _Session:
    session_id = "s1"
    tenant_id = "t1"
    budget_usd = None
    deadline_s = None
    task = Task(prompt="x", capability="code.generate", complexity=0.95)


class _Registry:
    def capabilities(self, tenant_id: str) -> set[str]:
        return {"code.generate"}


class _Runtime:
    store = object()
    registry = _Registry()

    def candidates(self, tenant_id: str, capability: str) -> list:
        return []


class _Execution:
    def __init__(self) -> None:
        self.session = _Session()
        self.runtime = _Runtime()
        self.history: list = []
        self.emitted: list[tuple[str, dict]] = []

    def emit(self, kind: str, payload: dict, key: str) -> None:
        self.emitted.append((kind, payload))


def test_the_runner_reads_the_record_through_the_reader_it_was_given() -> None:
    seen = []

    def reader(store, tenant_id, capability, complexity):
        seen.append((tenant_id, capability, complexity))
        return {PatternName.SOLO: PatternStats(300, 297)}

    async def solo(execution):
        from nofx.runtime import PatternResult

        return PatternResult("done", "agt", {})

    runners = {p: solo for p in CHOOSABLE}
    execution = _Execution()
    result = asyncio.run(make_auto(runners, reader)(execution))  # type: ignore[arg-type]
    assert seen == [("t1", "code.generate", 0.95)]
    kind, payload = execution.emitted[0]
    assert kind == "PatternChosen" and payload["pattern"] == "solo"
    assert payload["predicted_success"]["solo"] > 0.9
    assert result.details["chosen_pattern"] == "solo"
