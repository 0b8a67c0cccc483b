"""The bus itself: ``MessageBus`` (publish, replay, acknowledge, subscribe) and
``SharedContext`` (a session's key/value board); ``nofx.bus`` re-exports both."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.exc import IntegrityError

from nofx.bus import blobstore
from nofx.bus.publish import (
    MESSAGE_STREAM_TYPE,
    PUBLISH_ATTEMPTS,
    PublishBatcher,
    StoredMessage,
    batch_operation,
    check_body_depth,
    published_event,
    row_to_message,
)
from nofx.bus.subscription import Delivery, Subscription, notifier_for
from nofx.domain import Message, utcnow
from nofx.errors import ConcurrencyError, NotFoundError
from nofx.store import EventStore, Transaction
from nofx.store.schema import agent_communications as comms
from nofx.store.schema import bus_offsets, session_context
from nofx.store.writer import Append, Written


class MessageBus:
    def __init__(self, store: EventStore, *, inline_limit: int = blobstore.INLINE_LIMIT) -> None:
        self.store = store
        self.inline_limit = inline_limit
        self._batcher = PublishBatcher(store, inline_limit, notifier_for(store).signal)

    def publish(self, message: Message) -> StoredMessage:
        """Persist a message at the end of its channel; a repeated message_id (of the same
        tenant: ids are scoped per tenant) returns the original. Blocks this thread until the
        store's writer has committed it (use ``publish_async`` on an event loop). A body nested
        deeper than MAX_JSON_DEPTH is refused before anything is stored: every reader would
        choke on it."""
        check_body_depth(message)
        for _ in range(PUBLISH_ATTEMPTS):
            try:
                written: Written = self.store.write(self._operation(message))
            except IntegrityError:
                continue  # another process took this sequence number: take the next one
            stored: StoredMessage = written.value[0]
            notifier_for(self.store).signal(message.tenant_id, stored.channel)
            return stored
        raise ConcurrencyError(f"could not append to {message.channel}", hint="retry the publish")

    async def publish_async(self, message: Message) -> StoredMessage:
        """``publish`` without blocking the event loop: the publishes of this loop turn are
        written by one operation of the store's group-commit writer per channel, and this
        coroutine awaits the durable commit of its own message."""
        check_body_depth(message)
        return await self._batcher.add(message)

    def publish_nowait(self, message: Message) -> concurrent.futures.Future[Any]:
        """Queue the publish on the store's writer and return at once (for code on an event
        loop that must not wait); the future holds what the writer committed (``Written``,
        whose value lists the stored message; a message_id published before gives the
        original and stores nothing)."""
        check_body_depth(message)
        future: concurrent.futures.Future[Any] = self.store.submit(self._operation(message))

        def signal(done: concurrent.futures.Future[Any]) -> None:
            if not done.cancelled() and done.exception() is None:
                notifier_for(self.store).signal(message.tenant_id, message.channel)

        future.add_done_callback(signal)
        return future

    def _operation(self, message: Message) -> Append:
        return batch_operation([message], self.inline_limit)

    def _row(self, conn: Connection, row: Any) -> StoredMessage:
        return row_to_message(conn, row)

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
        """Acknowledge everything up to ``seq``; offsets only move forward (written by the
        store's writer, in its next commit group)."""

        def write(tx: Transaction) -> None:
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

        self.store.call(write)


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
        """Write a value; with ``expected_version`` the write fails if someone else wrote first.
        The read-check-write runs inside one operation of the store's writer, so no other
        write of the store comes between the version read and the update. Blocks this thread
        until the commit (``put_async`` on an event loop)."""
        written: int = self.store.call(self._put(session_id, key, value, scope, expected_version))
        return written

    async def put_async(
        self,
        session_id: str,
        key: str,
        value: Any,
        *,
        scope: str = SHARED,
        expected_version: int | None = None,
    ) -> int:
        """``put`` awaiting the writer's commit without blocking the event loop."""
        op = self._put(session_id, key, value, scope, expected_version)
        written: int = await self.store.call_async(op)
        return written

    def _put(
        self, session_id: str, key: str, value: Any, scope: str, expected_version: int | None
    ) -> Callable[[Transaction], int]:
        def write(tx: Transaction) -> int:
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

        return write

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


__all__ = [
    "MESSAGE_STREAM_TYPE",
    "Delivery",
    "MessageBus",
    "SharedContext",
    "StoredMessage",
    "Subscription",
    "published_event",
]
