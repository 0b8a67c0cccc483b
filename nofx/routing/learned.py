"""Learned routing statistics shared through the event store, so every worker and the API agree.

The store already holds every outcome (``StepCompleted`` / ``StepFailed`` events, ADR 0001),
so the statistics are a projection of it: each process folds in the outcomes written since
its cursor (at most once a second), and a restarted process rebuilds them from the last
``lookback`` of events. An outcome this process recorded itself is applied at once and
skipped when it comes back through the store, so nothing is counted twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Protocol

from nofx.data_contract import StreamType
from nofx.domain import Event
from nofx.routing.estimates import AgentEstimate
from nofx.routing.prediction import AgentHistory
from nofx.routing.selection import Outcome

OUTCOME_EVENTS = frozenset({"StepCompleted", "StepFailed"})
PAGE = 10_000
UNKNOWN_PRIOR = 0.7
# store reads for ``LearnedStats.poll``: one thread per process is plenty (one page a second)
_READER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nofx-learned-stats")


class OutcomeFeed(Protocol):
    """What the statistics read from the store (``EventStore.read_all``)."""

    def read_all(
        self,
        *,
        after_position: int = 0,
        limit: int = 1000,
        stream_type: str | None = None,
        since: datetime | None = None,
    ) -> list[Event]: ...


def outcome_from_event(event: Event) -> Outcome | None:
    """The routing outcome an event records, or None for any other event."""
    if event.type not in OUTCOME_EVENTS:
        return None
    p = event.payload
    if "agent_id" not in p or "capability" not in p:
        return None
    ok = event.type == "StepCompleted"
    key = event.idempotency_key or ""
    return Outcome(
        agent_id=str(p["agent_id"]),
        capability=str(p["capability"]),
        success=ok,
        latency_ms=float(p.get("latency_ms") or 0.0),
        cost_usd=float(p.get("cost_usd") or 0.0),
        error_class=None if ok else p.get("error_class"),
        error_type=None if ok else p.get("error.type"),
        call_id=key.removesuffix("/outcome") or None,
    )


class LearnedStats:
    """Per (agent, capability) success posteriors and per-agent histories, kept in step with
    the store when a ``feed`` is given (otherwise local to this process)."""

    def __init__(
        self,
        feed: OutcomeFeed | None = None,
        *,
        sync_every_s: float = 1.0,
        lookback: timedelta = timedelta(days=7),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.feed = feed
        self.sync_every_s = sync_every_s
        self.lookback = lookback
        self.clock = clock
        self.estimates: dict[tuple[str, str], AgentEstimate] = {}
        self.histories: dict[str, AgentHistory] = {}
        self.cursor = 0
        self.outcomes_seen = 0
        self._synced_at = float("-inf")
        self._applied_here: set[str] = set()
        self._fetching: Future[list[Event]] | None = None
        # agents whose statistics changed since a router last looked (to re-rank incrementally)
        self.touched: set[str] = set()
        # the declared-proficiency prior of each (agent, capability) a router has seen as a
        # candidate, so a first outcome starts from the same prior whether or not a ranking
        # happened to look at the agent before (UNKNOWN_PRIOR for agents never seen)
        self.priors: dict[tuple[str, str], float] = {}

    def estimate(self, agent_id: str, capability: str, prior: float) -> AgentEstimate:
        key = (agent_id, capability)
        found = self.estimates.get(key)
        if found is None:
            found = self.estimates[key] = AgentEstimate.from_prior(prior)
        return found

    def history(self, agent_id: str) -> AgentHistory | None:
        return self.histories.get(agent_id)

    def record(self, outcome: Outcome) -> None:
        """An outcome this process saw: learn now, and skip it when the store replays it."""
        if outcome.call_id is not None and self.feed is not None:
            self._applied_here.add(outcome.call_id)
        self._apply(outcome)

    def _apply(self, outcome: Outcome) -> None:
        key = (outcome.agent_id, outcome.capability)
        est = self.estimate(
            outcome.agent_id, outcome.capability, self.priors.get(key, UNKNOWN_PRIOR)
        )
        # a permanent error (a prompt over the window) is the request's doing, known before
        # the call: neither the posterior nor the history the failure model reads counts it,
        # as ml.run_failure.add_history_features leaves it out of training (ADR 0014)
        if outcome.error_class != "permanent":
            est.update(outcome.success, outcome.latency_ms, outcome.cost_usd)
            self.histories.setdefault(outcome.agent_id, AgentHistory()).update(
                not outcome.success, outcome.latency_ms
            )
        self.outcomes_seen += 1
        self.touched.add(outcome.agent_id)

    def sync(self, *, force: bool = False) -> int:
        """Fold in outcomes other processes wrote since the cursor; the number applied.
        Reads the store on this thread: off an event loop only (``poll`` is for loops)."""
        if self.feed is None:
            return 0
        now = self.clock()
        if not force and now - self._synced_at < self.sync_every_s:
            return 0
        self._synced_at = now
        applied = self._collect_fetched()
        return applied + self._fold(self._fetch(self.cursor))

    def poll(self) -> int:
        """``sync`` for code on an event loop: the read runs on a background thread and what
        it fetched is folded in here, on the caller's thread, at the next poll (so the
        statistics are only ever changed by their owner and no query blocks the loop)."""
        if self.feed is None:
            return 0
        applied = self._collect_fetched()
        now = self.clock()
        if self._fetching is None and now - self._synced_at >= self.sync_every_s:
            self._synced_at = now
            self._fetching = _READER.submit(self._fetch, self.cursor)
        return applied

    def _collect_fetched(self) -> int:
        fetching = self._fetching
        if fetching is None or not fetching.done():
            return 0
        self._fetching = None
        try:
            events = fetching.result()
        except Exception:  # the store is unreachable: keep what we know, read again later
            return 0
        return self._fold(events)

    def _fetch(self, cursor: int) -> list[Event]:
        """The outcome events after ``cursor`` (I/O only, safe on any thread)."""
        assert self.feed is not None
        first = cursor == 0
        fetched: list[Event] = []
        while True:
            events = self.feed.read_all(
                after_position=cursor,
                limit=PAGE,
                stream_type=StreamType.SESSION,
                since=datetime.now(UTC) - self.lookback if first else None,
            )
            fetched.extend(events)
            if events:
                cursor = events[-1].position
            # a restart catches up whole; afterwards one page per sync keeps decisions fast
            if len(events) < PAGE or not first:
                return fetched

    def _fold(self, events: list[Event]) -> int:
        applied = 0
        for event in events:
            if event.position <= self.cursor:
                continue  # already folded by an overlapping read
            self.cursor = event.position
            outcome = outcome_from_event(event)
            if outcome is None:
                continue
            if outcome.call_id is not None and outcome.call_id in self._applied_here:
                self._applied_here.discard(outcome.call_id)
                continue
            self._apply(outcome)
            applied += 1
        return applied
