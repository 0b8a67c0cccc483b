"""The communication hub: session topics and direct channels, persisted, ordered, replayable.

Every message lands in ``agent_communications`` with a sequence number per
channel, so readers see one order. Publishing the same ``message_id`` twice
stores it once (deduplication). Delivery is at least once: a subscriber reads
after its acknowledged offset and acknowledges what it processed; whatever it
did not acknowledge is delivered again. Replay reads a channel from any offset
or time. Large bodies are stored once by content and referenced. ``subscribe``
gives an async consumer that is woken by publishes and redelivers after a
visibility timeout.
"""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select, update
from sqlalchemy.exc import IntegrityError

from nofx.bus import blobstore
from nofx.bus.subscription import Delivery, Subscription, notifier_for
from nofx.domain import Event, Message, NewEvent, utcnow
from nofx.errors import ConcurrencyError, NotFoundError, ValidationError
from nofx.security.inputs import MAX_JSON_DEPTH, json_depth
from nofx.store import EventStore, Transaction
from nofx.store.event_store import as_utc
from nofx.store.schema import agent_communications as comms
from nofx.store.schema import bus_offsets, session_context
from nofx.store.writer import Append, Written


@dataclass(frozen=True)
class StoredMessage:
    message_id: str
    channel: str
    seq: int
    sender: str
    session_id: str | None
    body: dict[str, Any]
    created_at: datetime


MESSAGE_STREAM_TYPE = "bus"
_INSERT_MESSAGE = comms.insert()


def published_event(message: Message, seq: int, *, stored_as_blob: bool) -> NewEvent:
    """What analytics needs of a message (not its body), in OpenTelemetry messaging terms."""
    return NewEvent(
        type="MessagePublished",
        payload={
            "messaging.message.id": message.message_id,
            "messaging.destination.name": message.channel,
            "channel_seq": seq,
            "session_id": message.session_id,
            "sender": message.sender,
            "body_bytes": len(json.dumps(message.body, default=str)),
            "stored_as_blob": stored_as_blob,
        },
    )


def check_body_depth(message: Message) -> None:
    """Refuse a body nested deeper than MAX_JSON_DEPTH before anything is stored, on every
    publish path: every reader of the channel would choke on it."""
    if json_depth(message.body, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise ValidationError(
            f"the message body is nested deeper than {MAX_JSON_DEPTH} levels",
            hint="flatten the body, or store the structure as a JSON string",
        )


class MessageBus:
    def __init__(self, store: EventStore, *, inline_limit: int = blobstore.INLINE_LIMIT) -> None:
        self.store = store
        self.inline_limit = inline_limit

    def publish(self, message: Message) -> StoredMessage:
        """Persist a message at the end of its channel; a repeated message_id (of the same
        tenant: ids are scoped per tenant) returns the original. Blocks this thread until the
        store's writer has committed it (use ``publish_async`` on an event loop). A body nested
        deeper than MAX_JSON_DEPTH is refused before anything is stored: every reader would
        choke on it."""
        existing = self._by_id(message.message_id, message.tenant_id)
        if existing is not None:
            return existing
        for _ in range(5):
            try:
                written: Written = self.store.write(self._operation(message))
            except IntegrityError:
                again = self._by_id(message.message_id, message.tenant_id)
                if again is not None:
                    return again  # a concurrent publish of the same message won
                continue  # another process took this sequence number: take the next one
            return self._published(message, written)
        raise ConcurrencyError(f"could not append to {message.channel}", hint="retry the publish")

    async def publish_async(self, message: Message) -> StoredMessage:
        """``publish`` without blocking the event loop: the write goes through the store's
        group-commit writer and this coroutine awaits its durable commit."""
        for _ in range(5):
            try:
                written: Written = await self.store.write_async(self._operation(message))
            except IntegrityError:
                again = await self.store.read(self._by_id, message.message_id, message.tenant_id)
                if again is not None:
                    return again
                continue
            return self._published(message, written)
        raise ConcurrencyError(f"could not append to {message.channel}", hint="retry the publish")

    def publish_nowait(self, message: Message) -> concurrent.futures.Future[Any]:
        """Queue the publish on the store's writer and return at once (for code on an event
        loop that must not wait); the future holds what the writer committed. A message_id
        published before fails the future with IntegrityError and stores nothing."""
        future: concurrent.futures.Future[Any] = self.store.submit(self._operation(message))

        def signal(done: concurrent.futures.Future[Any]) -> None:
            if not done.cancelled() and done.exception() is None:
                notifier_for(self.store).signal(message.tenant_id, message.channel)

        future.add_done_callback(signal)
        return future

    def _published(self, message: Message, written: Written) -> StoredMessage:
        stored: StoredMessage = written.value
        notifier_for(self.store).signal(message.tenant_id, stored.channel)
        return stored

    def _operation(self, message: Message) -> Append:
        """One append for the writer: the message row and its MessagePublished event, in the
        same transaction; the channel's next seq is read once per channel per commit group."""
        check_body_depth(message)
        placed: dict[str, Any] = {}
        limit = self.inline_limit

        def prepare(op: Append, tx: Transaction) -> None:
            memo_key = ("bus.channel_seq", message.tenant_id, message.channel)
            last = tx.memo.get(memo_key)
            if last is None:
                tx.run_later()  # rows of this channel queued earlier in the group count
                last = int(
                    tx.conn.execute(
                        select(func.max(comms.c.channel_seq)).where(
                            comms.c.tenant_id == message.tenant_id,
                            comms.c.channel == message.channel,
                        )
                    ).scalar()
                    or 0
                )
            seq = last + 1
            tx.memo[memo_key] = seq
            body, ref = blobstore.put_if_large(tx.conn, message.body, limit)
            created_at = utcnow()
            tx.later(
                _INSERT_MESSAGE,
                {
                    "message_id": message.message_id,
                    "tenant_id": message.tenant_id,
                    "channel": message.channel,
                    "channel_seq": seq,
                    "session_id": message.session_id,
                    "sender": message.sender,
                    "body": body,
                    "body_ref": ref,
                    "created_at": created_at,
                },
            )
            placed.update(seq=seq, created_at=created_at)
            # the same transaction records it for analytics (agent_communications mart):
            # no message without its event, no event without its message
            op.events = [published_event(message, seq, stored_as_blob=ref is not None)]

        def after(_tx: Transaction, _written: list[Event]) -> StoredMessage:
            # what was just written, without reading it back
            return StoredMessage(
                message.message_id,
                message.channel,
                placed["seq"],
                message.sender,
                message.session_id,
                message.body,
                placed["created_at"],
            )

        return Append(
            # ids are unique per tenant, so the stream is too: another tenant's id is no conflict
            f"message-{message.tenant_id}-{message.message_id}",
            MESSAGE_STREAM_TYPE,
            message.tenant_id,
            [],
            known_version=0,
            prepare=prepare,
            after=after,
        )

    def _row(self, conn: Connection, row: Any) -> StoredMessage:
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

    def _by_id(self, message_id: str, tenant_id: str) -> StoredMessage | None:
        with self.store.engine.connect() as conn:
            row = conn.execute(
                select(comms).where(
                    comms.c.message_id == message_id, comms.c.tenant_id == tenant_id
                )
            ).first()
            return None if row is None else self._row(conn, row)

    def read(
        self,
        channel: str,
        *,
        tenant_id: str = "default",
        after_seq: int = 0,
        since: datetime | None = None,
        limit: int = 1000,
    ) -> list[StoredMessage]:
        """Messages of a channel in order, after an offset (and from a time, if given)."""
        query = select(comms).where(
            comms.c.tenant_id == tenant_id,
            comms.c.channel == channel,
            comms.c.channel_seq > after_seq,
        )
        if since is not None:
            query = query.where(comms.c.created_at >= since)
        query = query.order_by(comms.c.channel_seq).limit(limit)
        with self.store.engine.connect() as conn:
            return [self._row(conn, r) for r in conn.execute(query)]

    def replay(
        self,
        channel: str,
        *,
        tenant_id: str = "default",
        from_offset: int = 0,
        since: datetime | None = None,
    ) -> Iterator[StoredMessage]:
        """Every message from ``from_offset`` (exclusive) or ``since``, in channel order, page by page."""
        after = from_offset
        while True:
            page = self.read(channel, tenant_id=tenant_id, after_seq=after, since=since, limit=1000)
            yield from page
            if len(page) < 1000:
                return
            after = page[-1].seq

    def subscribe(
        self,
        subscriber: str,
        channel: str,
        *,
        tenant_id: str = "default",
        visibility_timeout_s: float = 30.0,
        poll_interval_s: float = 1.0,
    ) -> Subscription:
        """A push subscription from the subscriber's acknowledged offset (see ``Subscription``)."""
        return Subscription(
            self,
            subscriber,
            channel,
            tenant_id=tenant_id,
            visibility_timeout_s=visibility_timeout_s,
            poll_interval_s=poll_interval_s,
        )

    def acked(self, subscriber: str, channel: str, *, tenant_id: str = "default") -> int:
        with self.store.engine.connect() as conn:
            value = conn.execute(
                select(bus_offsets.c.acked_seq).where(
                    bus_offsets.c.tenant_id == tenant_id,
                    bus_offsets.c.subscriber == subscriber,
                    bus_offsets.c.channel == channel,
                )
            ).scalar()
        return int(value or 0)

    def poll(
        self, subscriber: str, channel: str, *, tenant_id: str = "default", limit: int = 100
    ) -> list[StoredMessage]:
        """What the subscriber has not acknowledged yet (delivered again until it is)."""
        return self.read(
            channel,
            tenant_id=tenant_id,
            after_seq=self.acked(subscriber, channel, tenant_id=tenant_id),
            limit=limit,
        )

    def ack(self, subscriber: str, channel: str, seq: int, *, tenant_id: str = "default") -> None:
        """Acknowledge everything up to ``seq``; offsets only move forward."""
        with self.store.transaction() as tx:
            moved = tx.conn.execute(
                update(bus_offsets)
                .where(
                    bus_offsets.c.tenant_id == tenant_id,
                    bus_offsets.c.subscriber == subscriber,
                    bus_offsets.c.channel == channel,
                    bus_offsets.c.acked_seq < seq,
                )
                .values(acked_seq=seq)
            ).rowcount
            if not moved and _offset_missing(tx.conn, tenant_id, subscriber, channel):
                tx.conn.execute(
                    bus_offsets.insert().values(
                        tenant_id=tenant_id, subscriber=subscriber, channel=channel, acked_seq=seq
                    )
                )


def _offset_missing(conn: Connection, tenant_id: str, subscriber: str, channel: str) -> bool:
    row = conn.execute(
        select(bus_offsets.c.acked_seq).where(
            bus_offsets.c.tenant_id == tenant_id,
            bus_offsets.c.subscriber == subscriber,
            bus_offsets.c.channel == channel,
        )
    ).first()
    return row is None


class SharedContext:
    """Versioned key-value context per session; ``scope`` 'session' is shared, any other scope
    (an agent id or a role) is private to that reader."""

    SHARED = "session"

    def __init__(self, store: EventStore, *, inline_limit: int = blobstore.INLINE_LIMIT) -> None:
        self.store = store
        self.inline_limit = inline_limit

    def put(
        self,
        session_id: str,
        key: str,
        value: Any,
        *,
        scope: str = SHARED,
        expected_version: int | None = None,
    ) -> int:
        """Write a value; with ``expected_version`` the write fails if someone else wrote first."""
        with self.store.transaction() as tx:
            where = (
                (session_context.c.session_id == session_id)
                & (session_context.c.scope == scope)
                & (session_context.c.key == key)
            )
            current = tx.conn.execute(select(session_context.c.version).where(where)).scalar()
            version = int(current or 0)
            if expected_version is not None and expected_version != version:
                raise ConcurrencyError(
                    f"context {key!r} is at version {version}, not {expected_version}",
                    hint="read it again and re-apply your change",
                )
            inline, ref = blobstore.put_if_large(tx.conn, value, self.inline_limit)
            values = {
                "version": version + 1,
                "value": inline,
                "value_ref": ref,
                "updated_at": utcnow(),
            }
            if current is None:
                tx.conn.execute(
                    session_context.insert().values(
                        session_id=session_id, scope=scope, key=key, **values
                    )
                )
            else:
                tx.conn.execute(update(session_context).where(where).values(**values))
        return version + 1

    def get(self, session_id: str, key: str, *, reader: str | None = None) -> tuple[Any, int]:
        """(value, version): the reader's private value if it has one, else the shared one."""
        scopes = [s for s in (reader, self.SHARED) if s]
        with self.store.engine.connect() as conn:
            for scope in scopes:
                row = conn.execute(
                    select(session_context).where(
                        session_context.c.session_id == session_id,
                        session_context.c.scope == scope,
                        session_context.c.key == key,
                    )
                ).first()
                if row is not None:
                    m = row._mapping
                    value = (
                        m["value"]
                        if m["value_ref"] is None
                        else blobstore.get(conn, m["value_ref"])
                    )
                    return value, int(m["version"])
        raise NotFoundError(
            f"no context {key!r} visible to {reader or 'the session'} in {session_id}"
        )


__all__ = ["Delivery", "MessageBus", "SharedContext", "StoredMessage", "Subscription"]
