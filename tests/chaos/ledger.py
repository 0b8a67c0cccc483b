"""An external ledger for chaos runs: what the store must contain, written outside the store.

Two writers append to one JSON-lines file opened with O_APPEND (each line is one write(2),
so lines from several processes never interleave, and a SIGKILL cannot take back a line
the kernel already has):

- the agent wrapper (``LedgeredProviders``) writes ``call`` when it really invokes an agent;
- the client (``LedgeredStore``) writes ``ack`` for every write the store acknowledged, with
  the stream, seq and idempotency key of each event.

``compare`` then checks the store against the ledger after the kill and the recovery. These
checks can fail: an acknowledged event missing or changed, or an executed call the store has
no ``StepStarted`` for, is a mismatch. Calls made twice for one step (an outcome lost with
its worker, the step redone) are counted, not hidden.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nofx.agents import AgentCall, ProviderSet
from nofx.domain import Agent, Event
from nofx.store import EventStore
from nofx.store.writer import Operation, Written


class Ledger:
    def __init__(self, path: Path | str, *, source: str) -> None:
        self.path = Path(path)
        self.source = source
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def record(self, kind: str, **fields: Any) -> None:
        line = json.dumps({"kind": kind, "source": self.source, **fields}) + "\n"
        os.write(self._fd, line.encode())

    def close(self) -> None:
        os.close(self._fd)


def read_ledger(path: Path | str) -> list[dict[str, Any]]:
    entries = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            entries.append(json.loads(line))
    return entries


class _LedgeredProvider:
    def __init__(self, inner: Any, ledger: Ledger) -> None:
        self.inner = inner
        self.ledger = ledger

    async def invoke(self, agent: Agent, call: AgentCall) -> Any:
        self.ledger.record("call", call_id=call.call_id, agent_id=agent.agent_id)
        return await self.inner.invoke(agent, call)


class LedgeredProviders(ProviderSet):
    """The same providers, each real invocation written to the ledger first."""

    def __init__(self, inner: ProviderSet, ledger: Ledger) -> None:
        super().__init__(
            {kind: _LedgeredProvider(p, ledger) for kind, p in inner.providers.items()}
        )


class LedgeredStore(EventStore):
    """An EventStore whose acknowledged writes are also written to the ledger."""

    def __init__(self, url: str, ledger: Ledger, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.ledger = ledger

    def _acknowledged(self, result: Any) -> Any:
        if isinstance(result, Written) and result.events:
            self.ledger.record("ack", events=[_event_fact(e) for e in result.events])
        return result

    def write(self, op: Operation) -> Any:
        return self._acknowledged(super().write(op))

    async def write_async(self, op: Operation) -> Any:
        return self._acknowledged(await super().write_async(op))

    def submit_async(self, op: Operation) -> asyncio.Future[Any]:
        # the ledger's callback is the first on the future: the ack is on file before the
        # caller's own callback goes on to call an agent
        future = super().submit_async(op)
        future.add_done_callback(
            lambda done: (
                None
                if done.cancelled() or done.exception() is not None
                else self._acknowledged(done.result())
            )
        )
        return future


def _event_fact(event: Event) -> list[Any]:
    return [event.stream_id, event.seq, event.idempotency_key, event.type]


@dataclass(frozen=True)
class LedgerCheck:
    acknowledged_events: int
    calls_executed: int
    missing_acknowledged: int
    changed_acknowledged: int
    calls_unknown_to_store: int
    repeated_agent_calls: int
    calls_executed_twice: int

    @property
    def ledger_mismatches(self) -> int:
        return self.missing_acknowledged + self.changed_acknowledged + self.calls_unknown_to_store

    def summary(self) -> dict[str, int]:
        return {
            "ledger_mismatches": self.ledger_mismatches,
            "repeated_agent_calls": self.repeated_agent_calls,
            "calls_executed_twice": self.calls_executed_twice,
            "acknowledged_events": self.acknowledged_events,
            "calls_executed": self.calls_executed,
            "missing_acknowledged": self.missing_acknowledged,
            "changed_acknowledged": self.changed_acknowledged,
            "calls_unknown_to_store": self.calls_unknown_to_store,
        }


def compare(path: Path | str, store: EventStore) -> LedgerCheck:
    """The store against the ledger (see the module docstring for what counts)."""
    entries = read_ledger(path)
    everything = store.read_all(limit=100_000_000)
    by_place = {(e.stream_id, e.seq): e for e in everything}
    keys = {e.idempotency_key for e in everything if e.idempotency_key}
    acked = [fact for entry in entries if entry["kind"] == "ack" for fact in entry["events"]]
    missing = changed = 0
    for stream_id, seq, key, event_type in acked:
        stored = by_place.get((stream_id, seq))
        if stored is None:
            missing += 1
        elif stored.idempotency_key != key or stored.type != event_type:
            changed += 1
    calls = [entry["call_id"] for entry in entries if entry["kind"] == "call"]
    unknown = sum(1 for call_id in calls if f"{call_id}/started" not in keys)
    per_call = Counter(calls)
    twice = sum(n - 1 for n in per_call.values() if n > 1)
    # a call whose outcome never reached the store (its worker died) was redone as a new attempt
    lost = sum(
        1
        for call_id in per_call
        if f"{call_id}/outcome" not in keys and f"{call_id}/started" in keys
    )
    return LedgerCheck(
        acknowledged_events=len(acked),
        calls_executed=len(calls),
        missing_acknowledged=missing,
        changed_acknowledged=changed,
        calls_unknown_to_store=unknown,
        repeated_agent_calls=twice + lost,
        calls_executed_twice=twice,
    )
