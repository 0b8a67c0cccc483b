"""Group commit: one writer thread per store turns many callers' writes into one transaction.

Callers (every session of the runtime, the bus, the API) hand the writer an operation and
wait on a future. The writer takes everything queued, writes it in one transaction, commits,
and only then resolves each caller's future, so an acknowledged write is as durable as the
store's durability setting says (see ``Durability``) and no caller does database I/O itself.

Two ways through a group:

- fast: stream versions come from the callers (``known_version``) or one grouped query,
  idempotency keys are checked with one query, events of the whole group are inserted with
  one multi-row statement, and projection statements queued with ``Transaction.later`` run
  as one executemany per statement.
- careful: if anything in the fast attempt objects (a duplicate key, a stream that moved,
  an operation that raised), the transaction is rolled back and the group is replayed one
  operation at a time, each in its own savepoint: the operation that conflicts fails alone,
  with its own error, and the rest of the group commits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from nofx.domain import Event, NewEvent, utcnow
from nofx.settings import Settings
from nofx.store.event_rows import (  # noqa: F401 - re-exported for the store's users
    _INSERT_RETURNING,
    EVENT_COLUMNS,
    KEY_CHUNK,
    _insert_events,
    _stream_versions,
    stored_event,
)

if TYPE_CHECKING:
    from nofx.store.event_store import Transaction

log = logging.getLogger(__name__)

Durability = Literal["full", "normal"]
DURABILITY_LEVELS: tuple[Durability, ...] = ("full", "normal")
DURABILITY_MEANING = {
    "full": "a write is acknowledged after its commit group is fsynced "
    "(SQLite synchronous=FULL; PostgreSQL synchronous_commit=on)",
    "normal": "a write is acknowledged after its commit group is written; the WAL is fsynced "
    "at checkpoints, so an OS crash or power loss may drop the last groups, a process crash "
    "does not (SQLite synchronous=NORMAL in WAL; PostgreSQL synchronous_commit=off)",
}
MAX_GROUP = 2000


def durability_from_env(value: str | None = None) -> Durability:
    """``NOFX_DURABILITY`` (``full`` by default); anything else is refused with what to set."""
    raw = (value if value is not None else Settings.from_env().durability).lower()
    if raw not in DURABILITY_LEVELS:
        raise ValueError(
            f"NOFX_DURABILITY={raw!r} is not a durability level; use 'full' (fsync every "
            "commit group, the default) or 'normal' (no fsync at commit)"
        )
    return raw  # type: ignore[return-value]


@dataclass
class Append:
    """Append events to one stream, then run ``after`` (projections) in the same transaction.

    ``known_version`` is the stream's last seq as the caller holds it (under a lease): no read
    is needed. Without it the writer reads the stream's version itself. ``expected_version``
    makes a moved stream a ConcurrencyError for this caller only.
    """

    stream_id: str
    stream_type: str
    tenant_id: str
    events: Sequence[NewEvent]
    known_version: int | None = None
    expected_version: int | None = None
    occurred_at: datetime | None = None
    after: Callable[[Transaction, list[Event]], Any] | None = None
    # runs first, in the group's transaction; may set ``events`` from what it reads
    # (e.g. a channel's next sequence number). Must be safe to run again on a replay.
    prepare: Callable[[Append, Transaction], None] | None = None


@dataclass
class Call:
    """Run ``fn(tx)`` inside the group's transaction, in queue order (claims, leases, acks)."""

    fn: Callable[[Transaction], Any]


Operation = Append | Call


@dataclass(frozen=True)
class Written:
    """What an ``Append`` wrote (or found by idempotency key), and what its ``after`` returned."""

    events: list[Event]
    value: Any = None


@dataclass
class WriterStats:
    groups: int = 0
    operations: int = 0
    events: int = 0
    fallbacks: int = 0
    failed_groups: int = 0
    busy_s: float = 0.0
    cpu_s: float = 0.0  # the writer thread's own CPU time (busy_s includes waiting for the GIL)


@dataclass
class _Item:
    op: Operation
    future: concurrent.futures.Future[Any] | None = None
    loop: asyncio.AbstractEventLoop | None = None
    waiter: asyncio.Future[Any] | None = None
    outcome: Any = None
    failed: bool = False


class _FallBack(Exception):
    """Something in the fast attempt objected: replay the group one operation at a time."""


_STOP = object()


@dataclass
class GroupCommitWriter:
    """One thread, one connection, one transaction per group of queued operations."""

    engine: Engine
    on_commit: Callable[[list[Event]], None] | None = None
    max_group: int = MAX_GROUP
    stats: WriterStats = field(default_factory=WriterStats)

    def __post_init__(self) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._committing = 0
        self._conn: Connection | None = None
        self._thread = threading.Thread(target=self._run, name="nofx-writer", daemon=True)
        self._stopped = threading.Event()
        self._thread.start()

    # -- submitting ------------------------------------------------------------------------
    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def backlog(self) -> int:
        """Operations queued or in the group being committed: a signal for callers to stop
        adding work (the runtime's admission waits while it is high), not an exact count."""
        return self._queue.qsize() + self._committing

    def submit(self, op: Operation) -> concurrent.futures.Future[Any]:
        """Queue ``op``; the future resolves after the commit that contains it."""
        self._check_open()
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue.put(_Item(op, future=future))
        return future

    def run(self, op: Operation) -> Any:
        """Queue ``op`` and block this (non-writer) thread until it is committed."""
        if threading.current_thread() is self._thread:
            raise RuntimeError(
                "the store's writer cannot wait on itself; write through the Transaction "
                "handed to your operation instead"
            )
        return self.submit(op).result()

    async def run_async(self, op: Operation) -> Any:
        """Queue ``op`` and await its commit without blocking the event loop."""
        return await self.submit_async(op)

    def submit_async(self, op: Operation) -> asyncio.Future[Any]:
        """Queue ``op``; a future of the running loop resolves after the commit that contains
        it (callers that chain writes attach a callback instead of running a task)."""
        self._check_open()
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._queue.put(_Item(op, loop=loop, waiter=waiter))
        return waiter

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop the thread."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._queue.put(_STOP)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _check_open(self) -> None:
        if self._stopped.is_set():
            raise RuntimeError("this store is disposed; open a new EventStore to write")

    # -- the writer thread -----------------------------------------------------------------
    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is _STOP:
                break
            group = [first]
            while len(group) < self.max_group:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                group.append(item)
            self._committing = len(group)
            self._commit(group)
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()

    def _connection(self) -> Connection:
        if self._conn is None or self._conn.invalidated or self._conn.closed:
            self._conn = self.engine.connect().execution_options(nofx_write=True)
        return self._conn

    def _commit(self, group: list[_Item]) -> None:
        started = time.perf_counter()
        cpu = time.thread_time()
        appended: list[Event] = []
        try:
            try:
                appended = self._attempt(group, careful=False)
            except _FallBack:
                self.stats.fallbacks += 1
                appended = self._attempt(group, careful=True)
        except BaseException as exc:  # the commit itself failed: nobody's write is durable
            self.stats.failed_groups += 1
            log.warning("commit group of %d operations failed: %s", len(group), exc)
            for item in group:
                item.outcome, item.failed = exc, True
            with contextlib.suppress(Exception):
                if self._conn is not None:
                    self._conn.close()
            self._conn = None
        self.stats.groups += 1
        self.stats.operations += len(group)
        self.stats.events += len(appended)
        self.stats.busy_s += time.perf_counter() - started
        self.stats.cpu_s += time.thread_time() - cpu
        self._committing = 0  # before the waiters learn of it: they may look at the backlog
        self._settle(group)
        if appended and self.on_commit is not None:
            try:
                self.on_commit(appended)
            except Exception:  # a listener's bug must not stop the writer
                log.exception("a commit listener failed")

    def _settle(self, group: list[_Item]) -> None:
        per_loop: dict[asyncio.AbstractEventLoop, list[_Item]] = {}
        for item in group:
            if item.future is not None:
                if item.failed:
                    item.future.set_exception(item.outcome)
                else:
                    item.future.set_result(item.outcome)
            elif item.loop is not None:
                per_loop.setdefault(item.loop, []).append(item)
        for loop, items in per_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody is waiting
                loop.call_soon_threadsafe(_resolve_waiters, items)

    def _attempt(self, group: list[_Item], *, careful: bool) -> list[Event]:
        from nofx.store.event_store import Transaction

        conn = self._connection()
        outer = conn.begin()
        tx = Transaction(conn)
        try:
            if careful:
                self._one_by_one(tx, group)
            else:
                self._fast(tx, group)
            outer.commit()
        except BaseException:
            with contextlib.suppress(Exception):
                outer.rollback()
            raise
        return tx.appended

    def _one_by_one(self, tx: Transaction, group: list[_Item]) -> None:
        tx.batching = False
        for item in group:
            mark = len(tx.appended)
            try:
                with tx.conn.begin_nested():
                    item.outcome = self._apply_one(tx, item.op)
            except Exception as exc:
                del tx.appended[mark:]
                item.outcome, item.failed = exc, True
            else:
                item.failed = False

    @staticmethod
    def _apply_one(tx: Transaction, op: Operation) -> Any:
        tx.fresh = set()
        if isinstance(op, Call):
            return op.fn(tx)
        if op.prepare is not None:
            op.prepare(op, tx)
        written = tx.append(
            op.stream_id,
            op.stream_type,
            op.tenant_id,
            op.events,
            known_version=op.known_version,
            expected_version=op.expected_version,
            occurred_at=op.occurred_at,
        )
        value = None if op.after is None else op.after(tx, written)
        tx.run_later()
        return Written(written, value)

    def _fast(self, tx: Transaction, group: list[_Item]) -> None:
        tx.batching = True
        versions: dict[str, int] = {}
        segment: list[_Item] = []
        try:
            for item in group:
                if isinstance(item.op, Call):
                    self._flush(tx, segment, versions)
                    segment = []
                    tx.run_later()
                    mark = len(tx.appended)
                    item.outcome = item.op.fn(tx)
                    for event in tx.appended[mark:]:
                        versions[event.stream_id] = max(versions.get(event.stream_id, 0), event.seq)
                else:
                    segment.append(item)
            self._flush(tx, segment, versions)
            tx.run_later()
        except _FallBack:
            raise
        except Exception as exc:
            raise _FallBack(str(exc)) from exc

    @staticmethod
    def _flush(tx: Transaction, segment: list[_Item], versions: dict[str, int]) -> None:
        if not segment:
            return
        conn = tx.conn
        ops: list[Append] = [item.op for item in segment]  # type: ignore[misc]
        for op in ops:
            if op.prepare is not None:
                op.prepare(op, tx)
        # a key already in the table is refused by its unique index at insert (and the group
        # replayed carefully); only a key repeated within the group is looked for here
        keys = [e.idempotency_key for op in ops for e in op.events if e.idempotency_key]
        if len(keys) != len(set(keys)):
            raise _FallBack("a repeated idempotency key")
        unknown = sorted({op.stream_id for op in ops if op.known_version is None} - versions.keys())
        if unknown:
            versions.update(_stream_versions(conn, unknown))
        rows: list[dict[str, Any]] = []
        now = utcnow()
        for op in ops:
            held = versions.get(op.stream_id)
            if op.known_version is not None and held is not None and held != op.known_version:
                raise _FallBack(f"{op.stream_id} moved within the group")
            base = op.known_version if held is None else held
            assert base is not None
            if op.expected_version is not None and base != op.expected_version:
                raise _FallBack(f"{op.stream_id} is not at the expected version")
            at = op.occurred_at or now
            for offset, item in enumerate(op.events, start=1):
                rows.append(
                    {
                        "stream_id": op.stream_id,
                        "stream_type": op.stream_type,
                        "seq": base + offset,
                        "type": item.type,
                        "tenant_id": op.tenant_id,
                        "occurred_at": at,
                        "idempotency_key": item.idempotency_key,
                        "payload": item.payload,
                    }
                )
            versions[op.stream_id] = base + len(op.events)
        try:
            positions = _insert_events(conn, rows)
        except IntegrityError as exc:
            raise _FallBack("a constraint objected") from exc
        cursor = 0
        for pending, op in zip(segment, ops, strict=True):
            # the values are the ones just stored: no validation needed to build the events
            written = [
                stored_event(positions[cursor + i], rows[cursor + i]) for i in range(len(op.events))
            ]
            cursor += len(op.events)
            tx.appended.extend(written)
            tx.fresh = {e.position for e in written}
            value = None if op.after is None else op.after(tx, written)
            pending.outcome = Written(written, value)


def _resolve_waiters(items: list[_Item]) -> None:
    for item in items:
        waiter = item.waiter
        if waiter is None or waiter.done():
            continue
        if item.failed:
            waiter.set_exception(item.outcome)
        else:
            waiter.set_result(item.outcome)
