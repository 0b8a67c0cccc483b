"""Append-only event store with synchronous projections, on SQLAlchemy Core.

Events and the projection rows they imply are written in one transaction, so a
crash never leaves a projection ahead of or behind its events. Writes from the
runtime, sessions and the bus go through one group-commit writer per store
(``nofx.store.writer``); ``transaction()`` remains for occasional writes from
synchronous code. SQLite takes the write lock up front (BEGIN IMMEDIATE) so
concurrent writers queue instead of failing half-way; PostgreSQL relies on the
(stream_id, seq) unique constraint.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, func, select
from sqlalchemy.exc import IntegrityError, OperationalError

from nofx.domain import Event, NewEvent, utcnow
from nofx.errors import ConcurrencyError
from nofx.store import schema
from nofx.store.driver import DriverStatement, FixedStatement, dumps, run_on_cursor
from nofx.store.writer import (
    DURABILITY_MEANING,
    Append,
    Call,
    Durability,
    GroupCommitWriter,
    Operation,
    Written,
    durability_from_env,
)

Listener = Callable[[list[Event]], None]
# Built once: statements with parameters passed at execution are compiled once and cached.
INSERT_EVENT = schema.events.insert()


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything we wrote was UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


WRITE_OPTION = "nofx_write"  # execution option marking a connection that writes
SQLITE_SYNCHRONOUS = {"full": "FULL", "normal": "NORMAL"}
POSTGRES_SYNCHRONOUS_COMMIT = {"full": "on", "normal": "off"}


def _configure_sqlite(engine: Engine, durability: Durability) -> None:
    synchronous = SQLITE_SYNCHRONOUS[durability]

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # writers take the write lock up front so they queue instead of failing half-way;
        # readers (WAL) need no lock and must not wait behind a commit group's fsync
        # on the DB-API cursor: through ``exec_driver_sql`` the BEGIN cost the writer ~0.1 ms
        # of CPU a commit group, ten times SQLite's own (ADR 0031)
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        run_on_cursor(conn, "BEGIN IMMEDIATE" if write else "BEGIN", autobegin=False)


def make_engine(url: str, durability: Durability = "full") -> Engine:
    """An engine for the store URL; SQLite files get WAL and a write lock taken at BEGIN.
    ``durability`` sets what a commit waits for (``nofx.store.writer.DURABILITY_MEANING``)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # reads keep the standard library's parser: orjson reads integers beyond 64 bits
        # as floats, and json.dumps wrote such integers exactly
        engine = create_engine(url, pool_size=5, max_overflow=10, json_serializer=dumps)
        _configure_sqlite(engine, durability)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    commit = POSTGRES_SYNCHRONOUS_COMMIT[durability]
    return create_engine(
        url,
        pool_pre_ping=True,
        json_serializer=dumps,
        pool_size=10,
        max_overflow=20,
        connect_args={"options": f"-c synchronous_commit={commit}"},
    )


def row_to_event(row: Any) -> Event:
    return Event(
        position=row.position,
        stream_id=row.stream_id,
        stream_type=row.stream_type,
        seq=row.seq,
        type=row.type,
        tenant_id=row.tenant_id,
        occurred_at=as_utc(row.occurred_at),
        idempotency_key=row.idempotency_key,
        payload=row.payload,
    )


class Transaction:
    """One unit of work: appends events and updates projections atomically."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.appended: list[Event] = []
        # positions written (not found by idempotency key) by the current operation: the
        # writer resets it per operation, since a group's transaction holds many callers'
        self.fresh: set[int] = set()
        # inside a commit group: statements queued with ``later`` run as one executemany each
        self.batching = False
        self._later: dict[Any, list[dict[str, Any]]] = {}
        self.memo: dict[Any, Any] = {}  # caches valid for this transaction only

    def later(self, statement: Any, params: dict[str, Any]) -> None:
        """Run ``statement`` before commit; in a commit group, every call with the same
        statement becomes one executemany. Only for writes nothing in the group reads back."""
        if not self.batching:
            self._execute(statement, [params])
            return
        self._later.setdefault(statement, []).append(params)

    def later_many(self, statement: Any, rows: list[dict[str, Any]]) -> None:
        """``later`` for many rows of one statement at once (one call a batch, not a row)."""
        if not rows:
            return
        if not self.batching:
            self._execute(statement, rows)
            return
        self._later.setdefault(statement, []).extend(rows)

    def run_later(self) -> None:
        """Execute what ``later`` queued (before a read that may need it, and before commit)."""
        pending, self._later = self._later, {}
        for statement, rows in pending.items():
            self._execute(statement, rows)

    def _execute(self, statement: Any, rows: list[dict[str, Any]]) -> None:
        if isinstance(statement, DriverStatement | FixedStatement):
            statement.execute(self.conn, rows)
        else:
            self.conn.execute(statement, rows)

    def stream_version(self, stream_id: str) -> int:
        current = self.conn.execute(
            select(func.max(schema.events.c.seq)).where(schema.events.c.stream_id == stream_id)
        ).scalar()
        return int(current or 0)

    def append(
        self,
        stream_id: str,
        stream_type: str,
        tenant_id: str,
        new_events: Sequence[NewEvent],
        *,
        expected_version: int | None = None,
        known_version: int | None = None,
        occurred_at: datetime | None = None,
    ) -> list[Event]:
        """Append events to a stream; a known idempotency key returns its event.

        ``expected_version`` is the stream's last seq the caller saw; a mismatch raises
        ConcurrencyError so the caller can re-read and decide again. ``known_version`` is the
        same promise from a caller that holds the stream (e.g. under a lease): the insert is
        tried straight away, and the careful path runs only if a constraint objects.
        """
        if known_version is not None:
            fast = self._append_fast(
                stream_id, stream_type, tenant_id, new_events, known_version, occurred_at
            )
            if fast is not None:
                return fast
            # a key that exists, or a stream that moved: repeat carefully, and refuse to write
            # on top of events this caller has not seen
            expected_version = known_version
        written: list[Event] = []
        fresh: list[NewEvent] = []
        for item in new_events:
            if item.idempotency_key is not None:
                existing = self.conn.execute(
                    select(schema.events).where(
                        schema.events.c.idempotency_key == item.idempotency_key
                    )
                ).first()
                if existing is not None:
                    written.append(row_to_event(existing))
                    continue
            fresh.append(item)
        if not fresh:
            return written
        version = self.stream_version(stream_id)
        if expected_version is not None and version != expected_version:
            raise ConcurrencyError(
                f"stream {stream_id} is at version {version}, expected {expected_version}",
                hint="re-read the stream and retry",
            )
        now = occurred_at or utcnow()
        for offset, item in enumerate(fresh, start=1):
            values: dict[str, Any] = {
                "stream_id": stream_id,
                "stream_type": stream_type,
                "seq": version + offset,
                "type": item.type,
                "tenant_id": tenant_id,
                "occurred_at": now,
                "idempotency_key": item.idempotency_key,
                "payload": item.payload,
            }
            try:
                with self.conn.begin_nested():
                    result = self.conn.execute(INSERT_EVENT, values)
            except IntegrityError as exc:
                raise ConcurrencyError(
                    f"another writer appended to {stream_id} at the same time",
                    hint="retry the operation",
                ) from exc
            key = result.inserted_primary_key
            position = key[0] if key else None
            event_obj = Event(position=int(position or 0), **values)
            written.append(event_obj)
            self.appended.append(event_obj)
            self.fresh.add(event_obj.position)
        return written

    def _append_fast(
        self,
        stream_id: str,
        stream_type: str,
        tenant_id: str,
        new_events: Sequence[NewEvent],
        known_version: int,
        occurred_at: datetime | None = None,
    ) -> list[Event] | None:
        now = occurred_at or utcnow()
        rows: list[dict[str, Any]] = [
            {
                "stream_id": stream_id,
                "stream_type": stream_type,
                "seq": known_version + offset,
                "type": item.type,
                "tenant_id": tenant_id,
                "occurred_at": now,
                "idempotency_key": item.idempotency_key,
                "payload": item.payload,
            }
            for offset, item in enumerate(new_events, start=1)
        ]
        written = []
        try:
            with self.conn.begin_nested():
                for values in rows:
                    result = self.conn.execute(INSERT_EVENT, values)
                    position = result.inserted_primary_key
                    assert position is not None
                    written.append(Event(position=int(position[0]), **values))
        except IntegrityError:
            return None  # a duplicate key or a moved stream: take the careful path
        self.appended.extend(written)
        self.fresh.update(e.position for e in written)
        return written


def _append_op(
    stream_id: str,
    stream_type: str,
    tenant_id: str,
    new_events: Sequence[NewEvent],
    expected_version: int | None,
) -> Append:
    return Append(
        stream_id, stream_type, tenant_id, list(new_events), expected_version=expected_version
    )


class EventStore:
    """Owns the engine; hands out transactions and ordered reads."""

    def __init__(
        self, url: str, *, migrate: bool = True, durability: Durability | None = None
    ) -> None:
        self.url = url
        self.durability: Durability = durability_from_env(durability)
        self.engine = make_engine(url, self.durability)
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        self._writer: GroupCommitWriter | None = None
        if migrate:
            from nofx.store.migrate import upgrade

            upgrade(self.engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def durability_meaning(self) -> str:
        return DURABILITY_MEANING[self.durability]

    # -- the one write path: a group-commit writer thread ----------------------------------
    @property
    def writer(self) -> GroupCommitWriter:
        """This store's writer thread, started on first use."""
        if self._writer is None:
            with self._lock:
                if self._writer is None:
                    self._writer = GroupCommitWriter(self.engine, on_commit=self._notify)
        return self._writer

    def _notify(self, events: list[Event]) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(events)

    def submit(self, op: Operation) -> Any:
        """Queue a write without waiting (a ``concurrent.futures.Future`` of its result)."""
        return self.writer.submit(op)

    def write(self, op: Operation) -> Any:
        """Queue a write and block this thread until its commit group is durable."""
        return self.writer.run(op)

    async def write_async(self, op: Operation) -> Any:
        """Queue a write and await its durable commit; the event loop keeps running."""
        return await self.writer.run_async(op)

    def submit_async(self, op: Operation) -> asyncio.Future[Any]:
        """Queue a write; a future of the running loop resolves after its durable commit
        (for chains of writes that continue in a callback rather than a task per write)."""
        return self.writer.submit_async(op)

    def call(self, fn: Callable[[Transaction], Any]) -> Any:
        """Run ``fn(tx)`` in the writer's next commit group and return what it returned."""
        return self.writer.run(Call(fn))

    async def call_async(self, fn: Callable[[Transaction], Any]) -> Any:
        return await self.writer.run_async(Call(fn))

    async def read(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a blocking read in a worker thread, off the event loop."""
        return await asyncio.to_thread(fn, *args, **kwargs)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with each batch of committed events (in this process)."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    @contextmanager
    def transaction(self, *, retries: int = 5) -> Iterator[Transaction]:
        """A write transaction; committed events reach subscribers after commit."""
        attempt = 0
        while True:
            try:
                with (
                    self.engine.connect().execution_options(**{WRITE_OPTION: True}) as conn,
                    conn.begin(),
                ):
                    tx = Transaction(conn)
                    yield tx
                break
            except OperationalError as exc:  # pragma: no cover - depends on lock timing
                attempt += 1
                if attempt > retries or "locked" not in str(exc).lower():
                    raise
        if tx.appended:
            with self._lock:
                listeners = list(self._listeners)
            for listener in listeners:
                listener(tx.appended)

    def append(
        self,
        stream_id: str,
        stream_type: str,
        tenant_id: str,
        new_events: Sequence[NewEvent],
        *,
        expected_version: int | None = None,
    ) -> list[Event]:
        """Append through the writer (blocks this thread until the commit is durable)."""
        op = _append_op(stream_id, stream_type, tenant_id, new_events, expected_version)
        written: Written = self.write(op)
        return written.events

    async def append_async(
        self,
        stream_id: str,
        stream_type: str,
        tenant_id: str,
        new_events: Sequence[NewEvent],
        *,
        expected_version: int | None = None,
    ) -> list[Event]:
        """``append`` awaiting the commit on the event loop instead of blocking a thread."""
        op = _append_op(stream_id, stream_type, tenant_id, new_events, expected_version)
        written: Written = await self.write_async(op)
        return written.events

    def read_stream(self, stream_id: str, *, after_seq: int = 0) -> list[Event]:
        query = (
            select(schema.events)
            .where(schema.events.c.stream_id == stream_id, schema.events.c.seq > after_seq)
            .order_by(schema.events.c.seq)
        )
        with self.engine.connect() as conn:
            return [row_to_event(r) for r in conn.execute(query)]

    def read_streams(self, session_ids: list[str]) -> dict[str, list[Event]]:
        """The session streams of ``session_ids`` in one query per 500 (keyed by session id)."""
        found: dict[str, list[Event]] = {}
        col = schema.events.c
        with self.engine.connect() as conn:
            for start in range(0, len(session_ids), 500):
                chunk = session_ids[start : start + 500]
                query = (
                    select(schema.events)
                    .where(col.stream_id.in_([f"session-{sid}" for sid in chunk]))
                    .order_by(col.stream_id, col.seq)
                )
                for row in conn.execute(query):
                    event = row_to_event(row)
                    found.setdefault(event.stream_id.removeprefix("session-"), []).append(event)
        return found

    def read_all(
        self,
        *,
        after_position: int = 0,
        limit: int = 1000,
        stream_type: str | None = None,
        since: datetime | None = None,
    ) -> list[Event]:
        """Events in global order after ``after_position`` (optionally from a time)."""
        query = select(schema.events).where(schema.events.c.position > after_position)
        if stream_type is not None:
            query = query.where(schema.events.c.stream_type == stream_type)
        if since is not None:
            query = query.where(schema.events.c.occurred_at >= since)
        query = query.order_by(schema.events.c.position).limit(limit)
        with self.engine.connect() as conn:
            return [row_to_event(r) for r in conn.execute(query)]

    def event_by_key(self, idempotency_key: str) -> Event | None:
        query = select(schema.events).where(schema.events.c.idempotency_key == idempotency_key)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else row_to_event(row)

    def last_position(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.max(schema.events.c.position))).scalar() or 0)

    def count_events(self, stream_id: str | None = None) -> int:
        query = select(func.count()).select_from(schema.events)
        if stream_id is not None:
            query = query.where(schema.events.c.stream_id == stream_id)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def dispose(self) -> None:
        """Write what is queued, stop the writer, close connections."""
        if self._writer is not None:
            self._writer.close()
        self.engine.dispose()
