"""Push subscriptions: an async consumer woken by publishes, with acks and a visibility timeout.

A subscription hands out each message of its channel in order; a message that
is not acknowledged within ``visibility_timeout_s`` is handed out again (at
least once). Acks may come in any order; the durable offset in ``bus_offsets``
advances only over the contiguous acknowledged prefix, so a consumer that
restarts resumes after the last message it finished and nothing is lost.
Publishes in this process wake waiting subscribers at once; publishes from
other processes are seen by a timed re-read (``poll_interval_s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from nofx.bus.publish import StoredMessage
    from nofx.store import EventStore


class SubscribedBus(Protocol):
    """What a subscription needs of ``MessageBus``: named here, so this module does not
    import the bus that imports it."""

    store: EventStore

    def read(
        self, channel: str, *, tenant_id: str = ..., after_seq: int = ..., limit: int = ...
    ) -> list[StoredMessage]: ...

    def acked(self, subscriber: str, channel: str, *, tenant_id: str = ...) -> int: ...

    def ack(self, subscriber: str, channel: str, seq: int, *, tenant_id: str = ...) -> None: ...


@dataclass(frozen=True)
class Delivery:
    """One hand-out of a message; ``attempt`` counts from 1 and grows with each redelivery."""

    message: StoredMessage
    attempt: int

    @property
    def seq(self) -> int:
        return self.message.seq


class ChannelNotifier:
    """In-process wake-ups per (tenant, channel); safe to signal from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watchers: dict[tuple[str, str], set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]]
        self._watchers = {}

    def register(self, tenant_id: str, channel: str) -> tuple[asyncio.Event, Callable[[], None]]:
        """An event set on each publish to the channel, and the function that stops it."""
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        entry = (loop, event)
        key = (tenant_id, channel)
        with self._lock:
            self._watchers.setdefault(key, set()).add(entry)

        def unwatch() -> None:
            with self._lock:
                watchers = self._watchers.get(key)
                if watchers is not None:
                    watchers.discard(entry)
                    if not watchers:
                        del self._watchers[key]

        return event, unwatch

    def signal(self, tenant_id: str, channel: str) -> None:
        with self._lock:
            watchers = list(self._watchers.get((tenant_id, channel), ()))
        for loop, event in watchers:
            with contextlib.suppress(RuntimeError):  # a closed loop will not wait again
                loop.call_soon_threadsafe(event.set)


_notifiers: weakref.WeakKeyDictionary[EventStore, ChannelNotifier] = weakref.WeakKeyDictionary()
_notifiers_lock = threading.Lock()


def notifier_for(store: EventStore) -> ChannelNotifier:
    """One notifier per store, so every MessageBus over the same store wakes the same subscribers."""
    with _notifiers_lock:
        notifier = _notifiers.get(store)
        if notifier is None:
            notifier = _notifiers[store] = ChannelNotifier()
        return notifier


class Subscription:
    """``async for delivery in subscription`` (or ``await get()``), then ``ack(delivery)``."""

    def __init__(
        self,
        bus: SubscribedBus,
        subscriber: str,
        channel: str,
        *,
        tenant_id: str = "default",
        visibility_timeout_s: float = 30.0,
        poll_interval_s: float = 1.0,
        batch: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if visibility_timeout_s < 0 or poll_interval_s <= 0 or batch < 1:
            raise ValueError(
                "visibility_timeout_s must be >= 0, poll_interval_s > 0 and batch >= 1"
            )
        self.bus = bus
        self.subscriber = subscriber
        self.channel = channel
        self.tenant_id = tenant_id
        self.visibility_timeout_s = visibility_timeout_s
        self.poll_interval_s = poll_interval_s
        self.batch = batch
        self.clock = clock
        self.durable_offset = bus.acked(subscriber, channel, tenant_id=tenant_id)
        self._fetched_up_to = self.durable_offset
        self._ready: list[int] = []  # heap of seqs waiting to be handed out
        self._messages: dict[int, StoredMessage] = {}
        self._attempts: dict[int, int] = {}
        self._in_flight: dict[int, float] = {}  # seq -> visibility deadline on self.clock
        self._acked: set[int] = set()  # acknowledged above the durable offset
        self._wake: asyncio.Event | None = None
        self._unwatch: Callable[[], None] | None = None
        self.closed = False

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Delivery:
        if self.closed:
            raise StopAsyncIteration
        return await self.get()

    def close(self) -> None:
        """Stop watching; unacknowledged messages stay for the next subscription to receive."""
        self.closed = True
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None

    @property
    def in_flight(self) -> frozenset[int]:
        return frozenset(self._in_flight)

    async def get(self, timeout: float | None = None) -> Delivery:
        """The next message to process: an expired one again, else the next new one; waits."""
        if self.closed:
            raise RuntimeError("this subscription is closed; open a new one with bus.subscribe()")
        if self._wake is None:
            self._wake, self._unwatch = notifier_for(self.bus.store).register(
                self.tenant_id, self.channel
            )
        give_up = None if timeout is None else time.monotonic() + timeout
        while True:
            self._wake.clear()  # cleared before reading, so a publish after the read wakes us
            delivery = self.get_nowait()
            if delivery is not None:
                return delivery
            wait = self.poll_interval_s
            if self._in_flight:
                wait = min(wait, max(0.0, min(self._in_flight.values()) - self.clock()))
            if give_up is not None:
                left = give_up - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no message on {self.channel} within {timeout} s")
                wait = min(wait, left)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    def get_nowait(self) -> Delivery | None:
        """The next message if one is ready now (an expired one first, in channel order), else None."""
        if self.closed:
            raise RuntimeError("this subscription is closed; open a new one with bus.subscribe()")
        now = self.clock()
        self._requeue_expired(now)
        if not self._ready:
            self._fetch()
        return self._hand_out(heapq.heappop(self._ready), now) if self._ready else None

    def ack(self, delivery: Delivery | StoredMessage | int) -> int:
        """Mark one message done; returns the durable offset (the contiguous acknowledged prefix)."""
        seq = delivery if isinstance(delivery, int) else delivery.seq
        if seq <= self.durable_offset or seq in self._acked:
            return self.durable_offset
        if seq not in self._attempts:
            raise ValueError(
                f"message {seq} of {self.channel} was not handed out by this subscription; "
                "acknowledge only deliveries you received"
            )
        if self._in_flight.pop(seq, None) is None:  # it expired while being processed: done now
            self._ready.remove(seq)
            heapq.heapify(self._ready)
        self._acked.add(seq)
        offset = self.durable_offset
        while offset + 1 in self._acked:
            offset += 1
            self._acked.discard(offset)
            self._messages.pop(offset, None)
            self._attempts.pop(offset, None)
        if offset > self.durable_offset:
            self.bus.ack(self.subscriber, self.channel, offset, tenant_id=self.tenant_id)
            self.durable_offset = offset
        return self.durable_offset

    def _requeue_expired(self, now: float) -> None:
        for seq, deadline in list(self._in_flight.items()):
            if deadline <= now:
                del self._in_flight[seq]
                heapq.heappush(self._ready, seq)

    def _fetch(self) -> None:
        page = self.bus.read(
            self.channel,
            tenant_id=self.tenant_id,
            after_seq=self._fetched_up_to,
            limit=self.batch,
        )
        for message in page:
            self._messages[message.seq] = message
            heapq.heappush(self._ready, message.seq)
        if page:
            self._fetched_up_to = page[-1].seq

    def _hand_out(self, seq: int, now: float) -> Delivery:
        self._attempts[seq] = self._attempts.get(seq, 0) + 1
        self._in_flight[seq] = now + self.visibility_timeout_s
        return Delivery(self._messages[seq], self._attempts[seq])
