"""Publishing: many messages of one channel become one operation of the store's writer.

A message is a row in ``agent_communications`` numbered by its channel (``channel_seq``,
gap-free) and a ``MessagePublished`` event on the channel's event stream, in the same
transaction. Publishers on an event loop are gathered per loop turn and per channel
(``PublishBatcher``): one writer operation numbers and writes the whole batch, so the single
writer thread pays per batch what it paid per message before (an operation, a future, a
closure, a version read), and the rows go in as one executemany per table.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, select
from sqlalchemy.exc import IntegrityError

from nofx.bus import blobstore
from nofx.data_contract import StreamType
from nofx.domain import Event, Message, NewEvent, utcnow
from nofx.errors import ConcurrencyError, ValidationError
from nofx.security.inputs import MAX_JSON_DEPTH, json_depth
from nofx.store.driver import DriverStatement, run_on_cursor
from nofx.store.event_store import as_utc
from nofx.store.schema import agent_communications as comms
from nofx.store.writer import Append, Written

if TYPE_CHECKING:
    import concurrent.futures

    from nofx.store import EventStore, Transaction

MESSAGE_STREAM_TYPE = StreamType.BUS
PUBLISH_ATTEMPTS = 5
BATCH_MAX = 256  # messages per writer operation (measured: 256 beat 64 by ~1.4x)
MESSAGE_COLUMNS = (
    "tenant_id",
    "message_id",
    "channel",
    "channel_seq",
    "session_id",
    "sender",
    "body",
    "body_ref",
    "created_at",
)
# fixed SQL and plain tuples (nofx.store.driver): Core's executemany cost ~20 us a row here
_INSERT_MESSAGE = DriverStatement(comms, MESSAGE_COLUMNS)
_ID_CHUNK = 500


@dataclass(frozen=True)
class StoredMessage:
    message_id: str
    channel: str
    seq: int
    sender: str
    session_id: str | None
    body: dict[str, Any]
    created_at: datetime


def channel_stream(tenant_id: str, channel: str) -> str:
    """The event stream of a channel (its MessagePublished events, in channel order)."""
    stream = f"channel-{tenant_id}-{channel}"
    if len(stream) <= 200:  # the events table's stream_id width
        return stream
    return "channel-" + hashlib.sha256(f"{tenant_id}\0{channel}".encode()).hexdigest()


def published_event(
    message: Message, seq: int, *, stored_as_blob: bool, body_bytes: int | None = None
) -> NewEvent:
    """What analytics needs of a message (not its body), in OpenTelemetry messaging terms.

    ``body_bytes`` is the size of the body's compact JSON (measured once by the publisher)."""
    if body_bytes is None:
        body_bytes = len(blobstore.canonical(message.body))
    return _published(message, message.channel, seq, stored_as_blob, body_bytes)


def _published(
    message: Message, channel: str, seq: int, stored_as_blob: bool, body_bytes: int
) -> NewEvent:
    return _new_event(
        "MessagePublished",
        {
            "messaging.message.id": message.message_id,
            "messaging.destination.name": channel,
            "channel_seq": seq,
            "session_id": message.session_id,
            "sender": message.sender,
            "body_bytes": body_bytes,
            "stored_as_blob": stored_as_blob,
        },
    )


_NEW_EVENT_FIELDS = frozenset(NewEvent.model_fields)
_set = object.__setattr__


def _new_event(type_: str, payload: dict[str, Any]) -> NewEvent:
    """A ``NewEvent`` of values built here (a str and a dict of plain values), without
    pydantic's validation (~6 us a message on the writer thread)."""
    event = NewEvent.__new__(NewEvent)
    _set(event, "__dict__", {"type": type_, "payload": payload, "idempotency_key": None})
    _set(event, "__pydantic_fields_set__", set(_NEW_EVENT_FIELDS))
    _set(event, "__pydantic_extra__", None)
    _set(event, "__pydantic_private__", None)
    return event


def check_body_depth(message: Message) -> None:
    """Refuse a body nested deeper than MAX_JSON_DEPTH before anything is stored, on every
    publish path: every reader of the channel would choke on it."""
    for value in message.body.values():
        if isinstance(value, dict | list):
            break
    else:
        return  # a flat body (the common case) is one level deep: no walk needed
    if json_depth(message.body, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise ValidationError(
            f"the message body is nested deeper than {MAX_JSON_DEPTH} levels",
            hint="flatten the body, or store the structure as a JSON string",
        )


def _stored_message(
    message_id: str,
    channel: str,
    seq: int,
    sender: str,
    session_id: str | None,
    body: dict[str, Any],
    created_at: datetime,
) -> StoredMessage:
    """``StoredMessage(...)`` without the frozen dataclass's one ``object.__setattr__`` per
    field (a third of the cost, per message, on the writer thread)."""
    stored = object.__new__(StoredMessage)
    _set(
        stored,
        "__dict__",
        {
            "message_id": message_id,
            "channel": channel,
            "seq": seq,
            "sender": sender,
            "session_id": session_id,
            "body": body,
            "created_at": created_at,
        },
    )
    return stored


def row_to_message(conn: Connection, row: Any) -> StoredMessage:
    m = row._mapping
    body = m["body"] if m["body_ref"] is None else blobstore.get(conn, m["body_ref"])
    return StoredMessage(
        m["message_id"],
        m["channel"],
        m["channel_seq"],
        m["sender"],
        m["session_id"],
        body,
        as_utc(m["created_at"]),
    )


def batch_operation(messages: Sequence[Message], inline_limit: int) -> Append:
    """One writer operation for messages of one channel (and tenant), in order; its value is
    the list of stored messages, one per input (a message_id stored before, or earlier in the
    batch, gives the original).

    The channel's last seq and the ids already queued are kept in the group's memo, so a
    commit group reads each channel once. When the writer replays a group one operation at a
    time (``tx.batching`` false), nothing is taken from the memo: each operation reads what
    the operations before it really wrote, so a refused one leaves no hole in the sequence."""
    tenant_id, channel = messages[0].tenant_id, messages[0].channel
    sized = [(m, blobstore.canonical(m.body)) for m in messages]  # by the publisher, not the writer
    seq_key = ("bus.channel_seq", tenant_id, channel)
    queued_key = ("bus.queued", tenant_id)
    results: list[StoredMessage] = []

    def prepare(op: Append, tx: Transaction) -> None:
        remember = tx.batching
        queued: dict[str, StoredMessage] = tx.memo.get(queued_key, {}) if remember else {}
        last = tx.memo.get(seq_key) if remember else None
        if last is None:
            tx.run_later()  # rows of this channel queued earlier in the group count
            last = _last_seq(tx.conn, tenant_id, channel)
        # ids stored before are looked up only on the one-at-a-time replay: in a commit group
        # a repeated id trips the primary key, and the writer then replays the group carefully
        # (repeats are rare: a resumed session saying something again), so the common case
        # costs no query
        existing: dict[str, StoredMessage] = {}
        if not remember:
            ids = list(dict.fromkeys(m.message_id for m, _ in sized))
            existing = _stored(tx.conn, tenant_id, ids)
        mine: dict[str, StoredMessage] = {}
        results.clear()
        events: list[NewEvent] = []
        now = utcnow()
        rows: list[dict[str, Any]] = []
        for message, raw in sized:
            message_id = message.message_id
            known = queued.get(message_id) or existing.get(message_id) or mine.get(message_id)
            if known is not None:
                results.append(known)
                continue
            last += 1
            large = len(raw) > inline_limit
            ref = blobstore.put_raw(tx.conn, message.body, raw) if large else None
            rows.append(
                {
                    "message_id": message_id,
                    "tenant_id": tenant_id,
                    "channel": channel,
                    "channel_seq": last,
                    "session_id": message.session_id,
                    "sender": message.sender,
                    "body": None if large else message.body,
                    "body_ref": ref,
                    "created_at": now,
                },
            )
            stored = _stored_message(
                message_id, channel, last, message.sender, message.session_id, message.body, now
            )
            mine[message_id] = stored
            results.append(stored)
            # the same transaction records it for analytics (agent_communications mart):
            # no message without its event, no event without its message
            events.append(_published(message, channel, last, large, len(raw)))
        tx.later_many(_INSERT_MESSAGE, rows)
        if remember:
            tx.memo[seq_key] = last
            queued.update(mine)  # the group falls back as a whole if anything objects
            tx.memo[queued_key] = queued
        op.events = events

    def after(_tx: Transaction, _written: list[Event]) -> list[StoredMessage]:
        return list(results)

    return Append(
        channel_stream(tenant_id, channel),
        MESSAGE_STREAM_TYPE,
        tenant_id,
        [],
        prepare=prepare,
        after=after,
    )


def _last_seq(conn: Connection, tenant_id: str, channel: str) -> int:
    """The channel's last ``channel_seq`` (0 for a new channel), on the DB-API cursor: Core
    built and compiled this select anew for every batch (~0.5 ms of the writer's CPU)."""
    dialect = conn.dialect.name
    if dialect in _LAST_SEQ_SQL:
        found = run_on_cursor(conn, _LAST_SEQ_SQL[dialect], (tenant_id, channel)).fetchall()
        return int(found[0][0] or 0)
    query = select(func.max(comms.c.channel_seq)).where(
        comms.c.tenant_id == tenant_id, comms.c.channel == channel
    )
    return int(conn.execute(query).scalar() or 0)


_LAST_SEQ_SQL = {
    "sqlite": "SELECT max(channel_seq) FROM agent_communications WHERE tenant_id = ? AND channel = ?",
    "postgresql": "SELECT max(channel_seq) FROM agent_communications "
    "WHERE tenant_id = %s::VARCHAR AND channel = %s::VARCHAR",
}


def _stored(conn: Connection, tenant_id: str, ids: list[str]) -> dict[str, StoredMessage]:
    found: dict[str, StoredMessage] = {}
    for start in range(0, len(ids), _ID_CHUNK):
        chunk = ids[start : start + _ID_CHUNK]
        query = select(comms).where(comms.c.tenant_id == tenant_id, comms.c.message_id.in_(chunk))
        for row in conn.execute(query):
            found[row._mapping["message_id"]] = row_to_message(conn, row)
    return found


_Waiter = tuple[Message, asyncio.Future[StoredMessage]]


class PublishBatcher:
    """Gathers the publishes of one event loop turn, one writer operation per channel.

    Each publisher awaits its own future, resolved after the commit that holds its message;
    a batch that loses a race for a sequence number to another process is sent again (the
    messages it did store are found by id), up to PUBLISH_ATTEMPTS times."""

    def __init__(
        self,
        store: EventStore,
        inline_limit: int,
        on_stored: Callable[[str, str], None],
    ) -> None:
        self.store = store
        self.inline_limit = inline_limit
        self.on_stored = on_stored
        self._pending: dict[asyncio.AbstractEventLoop, list[_Waiter]] = {}

    def add(self, message: Message) -> asyncio.Future[StoredMessage]:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[StoredMessage] = loop.create_future()
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = []
            loop.call_soon(self._send_all, loop, pending)
        pending.append((message, waiter))
        if len(pending) >= BATCH_MAX:
            # hand a full batch over now: the writer commits it (and waits for its fsync)
            # while this loop gathers the next one
            self._send_all(loop, pending)
        return waiter

    def _send_all(self, loop: asyncio.AbstractEventLoop, pending: list[_Waiter]) -> None:
        if self._pending.get(loop) is not pending:
            return  # already sent
        del self._pending[loop]
        by_channel: dict[tuple[str, str], list[_Waiter]] = {}
        for item in pending:
            by_channel.setdefault((item[0].tenant_id, item[0].channel), []).append(item)
        for batch in by_channel.values():
            self._send(loop, batch, 1)

    def _send(self, loop: asyncio.AbstractEventLoop, batch: list[_Waiter], attempt: int) -> None:
        try:
            op = batch_operation([m for m, _ in batch], self.inline_limit)
            future = self.store.submit(op)
        except Exception as exc:  # the store is closed: every publisher hears it
            _fail(batch, exc)
            return

        def committed(done: concurrent.futures.Future[Any]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting
                loop.call_soon_threadsafe(self._settle, loop, batch, done, attempt)

        future.add_done_callback(committed)

    def _settle(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: list[_Waiter],
        done: concurrent.futures.Future[Any],
        attempt: int,
    ) -> None:
        exc = done.exception()
        if isinstance(exc, IntegrityError) and attempt < PUBLISH_ATTEMPTS:
            self._send(loop, batch, attempt + 1)  # another process took these numbers
            return
        if exc is not None:
            if isinstance(exc, IntegrityError):
                exc = ConcurrencyError(
                    f"could not append to {batch[0][0].channel}", hint="retry the publish"
                )
            _fail(batch, exc)
            return
        written: Written = done.result()
        for (_, waiter), stored in zip(batch, written.value, strict=True):
            if not waiter.done():
                waiter.set_result(stored)
        self.on_stored(batch[0][0].tenant_id, batch[0][0].channel)


def _fail(batch: list[_Waiter], exc: BaseException) -> None:
    for _, waiter in batch:
        if not waiter.done():
            waiter.set_exception(exc)
