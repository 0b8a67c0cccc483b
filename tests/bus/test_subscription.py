"""Push subscriptions: woken by publishes, redelivery after a visibility timeout, durable offsets."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nofx.bus import MessageBus
from nofx.domain import Message
from nofx.store import EventStore

CHANNEL = "topic:session-1"


def publish(bus: MessageBus, *numbers: int) -> None:
    for i in numbers:
        bus.publish(Message(sender="agt_a", topic="session-1", body={"i": i}))


async def test_a_publish_wakes_a_waiting_subscriber_without_polling(store: EventStore) -> None:
    bus = MessageBus(store)
    async with bus.subscribe("worker", CHANNEL, poll_interval_s=30) as subscription:
        waiting = asyncio.create_task(subscription.get())
        await asyncio.sleep(0.05)
        assert not waiting.done()
        started = time.monotonic()
        await asyncio.to_thread(publish, MessageBus(store), 7)  # another bus, same store
        delivery = await asyncio.wait_for(waiting, timeout=5)
        assert time.monotonic() - started < 5  # far below the 30 s poll interval
    assert delivery.message.body == {"i": 7}
    assert (delivery.seq, delivery.attempt) == (1, 1)


async def test_another_process_publishes_are_seen_by_the_timed_read(store: EventStore) -> None:
    elsewhere = EventStore(str(store.engine.url))  # its own notifier, like another process
    try:
        async with MessageBus(store).subscribe(
            "worker", CHANNEL, poll_interval_s=0.05
        ) as subscription:
            waiting = asyncio.create_task(subscription.get(timeout=5))
            await asyncio.sleep(0.1)
            publish(MessageBus(elsewhere), 1)
            assert (await waiting).message.body == {"i": 1}
    finally:
        elsewhere.dispose()


async def test_an_unacknowledged_message_returns_only_after_its_visibility_timeout(
    store: EventStore,
) -> None:
    bus = MessageBus(store)
    publish(bus, 1, 2)
    subscription = bus.subscribe("worker", CHANNEL, visibility_timeout_s=0.3, poll_interval_s=5)
    first = await subscription.get()
    handed_out = time.monotonic()
    assert (await subscription.get()).seq == 2  # seq 1 is invisible, not lost
    assert subscription.in_flight == {1, 2}
    subscription.ack(2)
    with pytest.raises(TimeoutError, match=CHANNEL):
        await subscription.get(timeout=0.05)
    again = await subscription.get(timeout=5)
    assert time.monotonic() - handed_out >= 0.25
    assert (first.seq, first.attempt) == (1, 1)
    assert (again.seq, again.attempt) == (1, 2)
    assert subscription.ack(again) == 2
    assert bus.acked("worker", CHANNEL) == 2
    subscription.close()


def test_a_late_ack_after_expiry_is_kept_and_the_message_not_handed_out_again(
    store: EventStore,
) -> None:
    bus = MessageBus(store)
    publish(bus, 1, 2)
    now = [0.0]
    subscription = bus.subscribe("worker", CHANNEL, visibility_timeout_s=5)
    subscription.clock = lambda: now[0]
    slow_one, slow_two = subscription.get_nowait(), subscription.get_nowait()
    assert subscription.get_nowait() is None
    now[0] = 10.0  # both expired
    assert subscription.get_nowait() == type(slow_one)(slow_one.message, 2)
    assert subscription.ack(slow_two) == 0  # finished late: accepted, not redelivered
    assert subscription.get_nowait() is None
    assert subscription.ack(slow_one) == 2
    subscription.close()
    with pytest.raises(RuntimeError, match="closed"):
        subscription.get_nowait()


async def test_out_of_order_acks_move_the_durable_offset_over_the_prefix_only(
    store: EventStore,
) -> None:
    bus = MessageBus(store)
    publish(bus, 1, 2, 3)
    subscription = bus.subscribe("worker", CHANNEL)
    deliveries = [await subscription.get() for _ in range(3)]
    assert subscription.ack(deliveries[2]) == 0
    assert bus.acked("worker", CHANNEL) == 0
    assert subscription.ack(deliveries[0].message) == 1
    assert subscription.ack(deliveries[2]) == 1  # acking twice changes nothing
    assert subscription.ack(2) == 3
    assert bus.acked("worker", CHANNEL) == 3
    with pytest.raises(ValueError, match="not handed out"):
        subscription.ack(9)
    subscription.close()


async def test_a_restarted_consumer_resumes_after_its_last_contiguous_ack(
    store: EventStore,
) -> None:
    bus = MessageBus(store)
    publish(bus, 1, 2, 3, 4)
    async with bus.subscribe("worker", CHANNEL) as crashed:
        for _ in range(4):
            delivery = await crashed.get()
            if delivery.seq in (1, 3):
                crashed.ack(delivery)
    async with bus.subscribe("worker", CHANNEL, poll_interval_s=0.01) as restarted:
        seen = [(await restarted.get()).seq for _ in range(3)]
        with pytest.raises(TimeoutError):
            await restarted.get(timeout=0.05)
    assert seen == [2, 3, 4]  # 3 again: at least once, never lost
    assert [d.seq for d in [await MessageBus(store).subscribe("other", CHANNEL).get()]] == [1]


async def test_a_closed_subscription_ends_iteration_and_refuses_reads(store: EventStore) -> None:
    bus = MessageBus(store)
    publish(bus, 1, 2)
    subscription = bus.subscribe("worker", CHANNEL)
    seen = []
    async for delivery in subscription:
        seen.append(delivery.seq)
        subscription.ack(delivery)
        if delivery.seq == 2:
            subscription.close()
    assert seen == [1, 2]
    with pytest.raises(RuntimeError, match="closed"):
        await subscription.get()
    with pytest.raises(ValueError, match="visibility_timeout_s"):
        bus.subscribe("worker", CHANNEL, visibility_timeout_s=-1)


ACTIONS = ("ack", "drop", "hold", "release", "crash")


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(min_value=1, max_value=10),
    actions=st.lists(st.sampled_from(ACTIONS), max_size=40),
    visibility=st.integers(min_value=0, max_value=4),
    batch=st.integers(min_value=1, max_value=4),
)
def test_every_message_is_processed_in_order_despite_drops_holds_and_crashes(
    tmp_path_factory, n, actions, visibility, batch
) -> None:
    """Dropped or slow deliveries come back after the timeout, crashes resume from the durable
    offset (the contiguous acknowledged prefix), and no message is lost."""
    store = EventStore(f"sqlite:///{tmp_path_factory.mktemp('sub') / 'e.db'}")
    bus = MessageBus(store)
    publish(bus, *range(n))
    now = [0.0]

    def subscribe():
        subscription = bus.subscribe("worker", CHANNEL, visibility_timeout_s=visibility)
        subscription.batch, subscription.clock = batch, lambda: now[0]
        return subscription

    subscription = subscribe()
    acked = set(range(1, subscription.durable_offset + 1))
    held: list = []
    first_seen: list[int] = []
    try:
        for step in range(len(actions) + 20 * n + 20):
            if bus.acked("worker", CHANNEL) == n:
                break
            action = actions[step] if step < len(actions) else "ack"
            if action == "crash":
                subscription.close()
                subscription = subscribe()
                acked, held = set(range(1, subscription.durable_offset + 1)), []
                continue
            if action == "release" and held:
                acked.add(held[0].seq)
                subscription.ack(held.pop(0))  # a slow consumer finishing, maybe after expiry
            delivery = subscription.get_nowait()
            if delivery is None:
                now[0] += 1  # nothing visible: let time pass
                continue
            assert delivery.seq not in acked  # never handed out again once acknowledged
            if delivery.seq not in first_seen:
                first_seen.append(delivery.seq)
            if action in ("ack", "release"):
                acked.add(delivery.seq)
                subscription.ack(delivery)
            elif action == "hold":
                held.append(delivery)
            prefix = 0
            while prefix + 1 in acked:
                prefix += 1
            assert bus.acked("worker", CHANNEL) == subscription.durable_offset == prefix
        assert bus.acked("worker", CHANNEL) == n
        assert first_seen == list(range(1, n + 1))
    finally:
        subscription.close()
        store.dispose()


def test_a_subscriber_whose_event_loop_ended_does_not_break_publishers(store: EventStore) -> None:
    bus = MessageBus(store)

    async def wait_and_vanish() -> None:
        abandoned = bus.subscribe("worker", CHANNEL)  # never closed
        with pytest.raises(TimeoutError):
            await abandoned.get(timeout=0.01)

    asyncio.run(wait_and_vanish())
    publish(bus, 1)
    assert [m.seq for m in bus.read(CHANNEL)] == [1]
