"""Request-time failure prediction the router can afford per candidate: plain numbers, no ML stack.

The model is additive in log-odds: an intercept, one weight per bin of each numeric feature
and one weight per category value. Bins let it bend where risk bends (a timeout margin
matters near zero and not far above it; a prompt over the context window always fails)
while staying a handful of bisects and additions, a few microseconds per candidate.
``ml.request_failure`` fits it and registers it in MLflow; :class:`ChampionWatcher` loads the
champion and swaps it in when the alias moves.

Every input exists at the moment of the decision: the request (capability, prompt size,
complexity, the call's timeout), the candidate's declaration (proficiency, context window)
and its outcomes *before* now (:class:`AgentHistory`). ``ml.run_failure.add_history_features``
computes the same numbers over a log of runs for training; a test holds the two together.
"""

from __future__ import annotations

import logging
import math
import threading
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from statistics import median
from typing import Any

log = logging.getLogger(__name__)

RECENT_RUNS = 20
LATENCY_HISTORY = 50
DEFAULT_LATENCY_MS = 1000.0
DEFAULT_TIMEOUT_S = 60.0
NUMERIC = (
    "complexity",
    "log_input_tokens",
    "proficiency",
    "context_fill",
    "log_timeout_margin",
    "recent_failure_rate",
    "prior_failure_rate",
)
CATEGORICAL = ("capability",)
FORMAT = "nofx.compact-logodds/1"
# The timeout margin (log of timeout over expected latency) is capped where a timeout stops
# being possible: at 2 the timeout is 7x the expected latency, 5.7 sigma of the latency
# spread. Above that the margin only measures how fast the agent usually is, i.e. which agent
# it is; uncapped, the model learnt agent identity through it (fast small models fail more)
# and read "a harder prompt lowers the margin" as risk on every agent (ADR 0014).
MARGIN_FLOOR = -5.0
MARGIN_CAP = 2.0
MAX_BINS = 64


@dataclass
class AgentHistory:
    """An agent's outcomes up to now, as the model reads them (all capabilities together).

    O(1) to update and to read; the latency median is cached until the next success.
    """

    recent: deque[int] = field(default_factory=lambda: deque(maxlen=RECENT_RUNS))
    runs: int = 0
    failures: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_HISTORY))
    _median: float | None = None

    def update(self, failed: bool, latency_ms: float) -> None:
        self.recent.append(1 if failed else 0)
        self.runs += 1
        self.failures += int(failed)
        if not failed and latency_ms > 0:
            self.latencies.append(latency_ms)
            self._median = None

    @property
    def recent_failure_rate(self) -> float:
        # smoothed towards a small prior rate so an agent's first runs are not 0 or 1
        return (sum(self.recent) + 0.05) / (len(self.recent) + 1.0)

    @property
    def prior_failure_rate(self) -> float:
        return (self.failures + 0.5) / (self.runs + 10.0)

    @property
    def latency_p50_ms(self) -> float | None:
        if not self.latencies:
            return None
        if self._median is None:
            self._median = float(median(self.latencies))
        return self._median


@dataclass(frozen=True)
class HistoryNumbers:
    """What ``request_features`` reads of an agent's history, kept as of one moment."""

    recent_failure_rate: float
    prior_failure_rate: float
    latency_p50_ms: float | None

    @classmethod
    def of(cls, history: AgentHistory) -> HistoryNumbers:
        return cls(history.recent_failure_rate, history.prior_failure_rate, history.latency_p50_ms)


def request_features(
    *,
    complexity: float,
    input_tokens: int,
    proficiency: int,
    context_window_tokens: int | None,
    timeout_s: float,
    history: AgentHistory | HistoryNumbers | None,
) -> dict[str, float]:
    """The numeric inputs for one (request, candidate) pair, as of now."""
    if history is None:
        history = AgentHistory()
    p50 = history.latency_p50_ms or DEFAULT_LATENCY_MS
    expected_ms = p50 * (1.0 + complexity)
    fill = input_tokens / context_window_tokens if context_window_tokens else 0.0
    margin = math.log(max(timeout_s, 1e-6) * 1000.0 / expected_ms)
    return {
        "complexity": float(complexity),
        "log_input_tokens": math.log(max(1.0, float(input_tokens))),
        "proficiency": float(proficiency),
        "context_fill": fill,
        "log_timeout_margin": min(MARGIN_CAP, max(MARGIN_FLOOR, margin)),
        "recent_failure_rate": history.recent_failure_rate,
        "prior_failure_rate": history.prior_failure_rate,
    }


@dataclass(frozen=True)
class BinnedTerm:
    """One numeric feature: a slope, plus a weight per bin where bin ``i`` holds values in
    (edges[i-1], edges[i]] (so a plain logistic regression is the special case of one bin)."""

    feature: str
    edges: tuple[float, ...]
    weights: tuple[float, ...]
    slope: float = 0.0

    def __post_init__(self) -> None:
        if len(self.weights) != len(self.edges) + 1:
            raise ValueError(
                f"{self.feature}: {len(self.edges)} edges need {len(self.edges) + 1} weights, "
                f"got {len(self.weights)}"
            )
        if list(self.edges) != sorted(self.edges) or len(self.edges) > MAX_BINS:
            raise ValueError(f"{self.feature}: edges must be ascending and at most {MAX_BINS}")

    def weight(self, value: float) -> float:
        return self.weights[bisect_left(self.edges, value)] + self.slope * value


@dataclass(frozen=True)
class CompactFailureModel:
    """p(fail) = sigmoid(intercept + sum of bin weights + category weights)."""

    intercept: float
    terms: tuple[BinnedTerm, ...]
    categories: Mapping[str, Mapping[str, float]]
    threshold: float = 0.5
    version: str = "unregistered"

    def log_odds(self, values: Mapping[str, float], labels: Mapping[str, str]) -> float:
        z = self.intercept
        for term in self.terms:
            z += term.weight(values[term.feature])
        for feature, weights in self.categories.items():
            z += weights.get(labels.get(feature, ""), 0.0)
        return z

    def probability(self, values: Mapping[str, float], labels: Mapping[str, str]) -> float:
        z = self.log_odds(values, labels)
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

    def contributions(
        self, values: Mapping[str, float], labels: Mapping[str, str], top: int = 3
    ) -> list[tuple[str, float]]:
        """The terms that pushed this prediction most, largest first (for explanations)."""
        parts = [(t.feature, t.weight(values[t.feature])) for t in self.terms]
        parts += [
            (f"{f}={labels.get(f, '')}", w.get(labels.get(f, ""), 0.0))
            for f, w in self.categories.items()
        ]
        return sorted(parts, key=lambda p: -abs(p[1]))[:top]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "intercept": self.intercept,
            "threshold": self.threshold,
            "terms": [
                {
                    "feature": t.feature,
                    "edges": list(t.edges),
                    "weights": list(t.weights),
                    "slope": t.slope,
                }
                for t in self.terms
            ],
            "categories": {k: dict(v) for k, v in self.categories.items()},
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], version: str = "unregistered"
    ) -> CompactFailureModel:
        if data.get("format") != FORMAT:
            raise ValueError(
                f"not a compact failure model (format {data.get('format')!r}, expected "
                f"{FORMAT!r}); register one with ml.request_failure"
            )
        terms = tuple(
            BinnedTerm(
                t["feature"],
                tuple(float(e) for e in t["edges"]),
                tuple(float(w) for w in t["weights"]),
                float(t.get("slope", 0.0)),
            )
            for t in data["terms"]
        )
        missing = set(NUMERIC) - {t.feature for t in terms}
        unknown = {t.feature for t in terms} - set(NUMERIC)
        if missing or unknown:
            raise ValueError(
                f"model features do not match what the router computes: missing "
                f"{sorted(missing)}, unknown {sorted(unknown)}"
            )
        return cls(
            intercept=float(data["intercept"]),
            terms=terms,
            categories={
                k: {str(c): float(w) for c, w in v.items()} for k, v in data["categories"].items()
            },
            threshold=float(data.get("threshold", 0.5)),
            version=version,
        )


REQUEST_ONLY = frozenset({"complexity", "log_input_tokens"})


class RequestScorer:
    """One request's p(fail) for many candidates: the request's own terms are summed once,
    and each candidate adds only its five (proficiency, context fill, timeout margin, recent
    and prior failure rates). Equal to ``model.probability(request_features(...))``."""

    def __init__(
        self,
        model: CompactFailureModel,
        *,
        capability: str,
        complexity: float,
        input_tokens: int,
        timeout_s: float,
    ) -> None:
        self.model = model
        self.complexity = complexity
        self.input_tokens = input_tokens
        self.timeout_ms = max(timeout_s, 1e-6) * 1000.0
        fixed = {
            "complexity": float(complexity),
            "log_input_tokens": math.log(max(1.0, float(input_tokens))),
        }
        self.base = model.intercept + sum(
            t.weight(fixed[t.feature]) for t in model.terms if t.feature in REQUEST_ONLY
        )
        for weights in model.categories.values():
            self.base += weights.get(capability, 0.0)
        by_name = {t.feature: t for t in model.terms}
        self.proficiency = by_name["proficiency"]
        self.fill = by_name["context_fill"]
        self.margin = by_name["log_timeout_margin"]
        self.recent = by_name["recent_failure_rate"]
        self.prior = by_name["prior_failure_rate"]

    def p_fail(
        self, proficiency: int, context_window_tokens: int | None, history: AgentHistory | None
    ) -> float:
        z = self.log_odds(proficiency, context_window_tokens, history)
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

    def shift_from(
        self,
        typical: RequestScorer,
        context_window_tokens: int | None,
        history: AgentHistory | None,
    ) -> float:
        """``log_odds`` of this request minus ``typical``'s, for the same agent and model: the
        agent's own terms (proficiency, recent and lifetime rates) cancel, so only the
        request's terms, the context fill and the timeout margin are computed."""
        p50 = (
            DEFAULT_LATENCY_MS if history is None else history.latency_p50_ms or DEFAULT_LATENCY_MS
        )
        return self.shift_at(typical, context_window_tokens, p50)

    def shift_at(
        self, typical: RequestScorer, context_window_tokens: int | None, p50: float
    ) -> float:
        """``shift_from`` for an agent whose latency median the model reads as ``p50``."""
        return (
            self.base
            - typical.base
            + self._fill_and_margin(context_window_tokens, p50)
            - typical._fill_and_margin(context_window_tokens, p50)
        )

    def _fill_and_margin(self, context_window_tokens: int | None, p50: float) -> float:
        fill = self.input_tokens / context_window_tokens if context_window_tokens else 0.0
        margin = math.log(self.timeout_ms / (p50 * (1.0 + self.complexity)))
        return self.fill.weight(fill) + self.margin.weight(
            min(MARGIN_CAP, max(MARGIN_FLOOR, margin))
        )

    def log_odds(
        self, proficiency: int, context_window_tokens: int | None, history: AgentHistory | None
    ) -> float:
        if history is None:
            p50, recent, prior = DEFAULT_LATENCY_MS, 0.05, 0.05
        else:
            p50 = history.latency_p50_ms or DEFAULT_LATENCY_MS
            recent, prior = history.recent_failure_rate, history.prior_failure_rate
        fill = self.input_tokens / context_window_tokens if context_window_tokens else 0.0
        margin = math.log(self.timeout_ms / (p50 * (1.0 + self.complexity)))
        z = (
            self.base
            + self.proficiency.weight(float(proficiency))
            + self.fill.weight(fill)
            + self.margin.weight(min(MARGIN_CAP, max(MARGIN_FLOOR, margin)))
            + self.recent.weight(recent)
            + self.prior.weight(prior)
        )
        return z


def anchored_failure(
    posterior_fail: float, request_log_odds: float, typical_log_odds: float
) -> float:
    """p(fail) for this request: the agent's level from its posterior (hundreds of its own
    outcomes), moved by how much harder the model finds this request than a typical one for
    the same agent (complexity, prompt size, timeout margin). The model's agent terms (recent
    and lifetime failure rates over a handful of runs) cancel in the difference: on their own
    they let one unlucky streak, or the hard tasks a router sent an agent, outvote the
    posterior (measured in ADR 0014)."""
    p = min(1.0 - 1e-9, max(1e-9, posterior_fail))
    z = math.log(p / (1.0 - p)) + request_log_odds - typical_log_odds
    if z > 700:
        return 1.0
    return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0


Loader = Callable[[], tuple[str, dict[str, Any]] | None]


class ChampionWatcher:
    """Holds the current champion; ``poll`` asks the registry whether the alias moved.

    ``loader`` returns (version, model dict) of the champion, or None when there is none.
    ``start`` polls on a daemon thread so the router never waits on the registry; a failed
    poll keeps the model it has (and logs why), so a registry outage degrades nothing.
    """

    def __init__(self, loader: Loader, interval_s: float = 60.0) -> None:
        self.loader = loader
        self.interval_s = interval_s
        self.model: CompactFailureModel | None = None
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __call__(self) -> CompactFailureModel | None:
        return self.model

    def poll(self) -> bool:
        """Reload when the champion's version changed; True when the model was swapped."""
        try:
            found = self.loader()
        except Exception as exc:  # the registry is an edge: keep serving what we have
            self.error = f"{type(exc).__name__}: {exc}"
            log.warning("failure-model champion not refreshed: %s", self.error)
            return False
        self.error = None
        if found is None:
            return False
        version, data = found
        if self.model is not None and self.model.version == version:
            return False
        self.model = CompactFailureModel.from_dict(data, version=version)
        return True

    def start(self) -> ChampionWatcher:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="champion-watcher", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        self.poll()  # the first load too: constructing a router never waits on the registry
        while not self._stop.wait(self.interval_s):
            self.poll()

    def stop(self) -> None:
        self._stop.set()


def mlflow_champion_loader(name: str, tracking_uri: str) -> Loader:
    """Read the compact model of ``models:/<name>@champion`` (its version's source is the
    JSON artifact ``ml.request_failure`` logged). MLflow is imported only when used."""

    def load() -> tuple[str, dict[str, Any]] | None:
        import json

        import mlflow.artifacts
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        try:
            version = client.get_model_version_by_alias(name, "champion")
        except MlflowException:
            return None
        path = mlflow.artifacts.download_artifacts(
            artifact_uri=f"{version.source}/compact_model.json", tracking_uri=tracking_uri
        )
        with open(path, encoding="utf-8") as fh:
            return str(version.version), json.load(fh)

    return load
