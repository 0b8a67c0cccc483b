"""The message bus: per-channel order, dedup by id, at-least-once with acks, replay, context, blobs."""

from __future__ import annotations

import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from nofx.bus import MessageBus, SharedContext
from nofx.domain import Message
from nofx.errors import ConcurrencyError, NotFoundError
from nofx.store import EventStore
from nofx.store.schema import blobs


def msg(i: int, **kw) -> Message:
    return Message(
        sender=kw.pop("sender", "agt_a"), topic=kw.pop("topic", "session-1"), body={"i": i}, **kw
    )


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(min_value=0, max_value=25),
    offset=st.integers(min_value=0, max_value=30),
    repeats=st.lists(st.integers(min_value=0, max_value=24), max_size=10),
)
def test_replay_from_any_offset_is_exactly_the_suffix(tmp_path_factory, n, offset, repeats) -> None:
    store = EventStore(f"sqlite:///{tmp_path_factory.mktemp('bus') / 'e.db'}")
    bus = MessageBus(store)
    sent = [bus.publish(msg(i, message_id=f"m{i}")) for i in range(n)]
    for r in repeats:  # publishing a known id again changes nothing
        if r < n:
            assert bus.publish(msg(999, message_id=f"m{r}")).body == {"i": r}
    everything = list(bus.replay("topic:session-1"))
    assert [m.seq for m in everything] == list(range(1, n + 1))
    assert [m.message_id for m in everything] == [m.message_id for m in sent]
    suffix = list(bus.replay("topic:session-1", from_offset=offset))
    assert suffix == everything[offset:]
    store.dispose()


def test_channels_are_separate_and_direct_messages_have_their_own(store: EventStore) -> None:
    bus = MessageBus(store)
    bus.publish(msg(1, topic="session-1"))
    bus.publish(msg(2, topic="session-2"))
    bus.publish(Message(sender="agt_a", recipient="agt_b", body={"hi": 1}))
    assert [m.body for m in bus.read("topic:session-1")] == [{"i": 1}]
    assert [m.body for m in bus.read("direct:agt_b")] == [{"hi": 1}]
    assert bus.read("topic:session-1", tenant_id="other") == []


def test_at_least_once_until_acknowledged(store: EventStore) -> None:
    bus = MessageBus(store)
    for i in range(5):
        bus.publish(msg(i))
    first = bus.poll("worker", "topic:session-1", limit=3)
    assert [m.seq for m in first] == [1, 2, 3]
    assert [m.seq for m in bus.poll("worker", "topic:session-1", limit=3)] == [
        1,
        2,
        3,
    ]  # not acked: again
    bus.ack("worker", "topic:session-1", 2)
    assert [m.seq for m in bus.poll("worker", "topic:session-1")] == [3, 4, 5]
    bus.ack("worker", "topic:session-1", 1)  # offsets never move back
    assert bus.acked("worker", "topic:session-1") == 2
    assert [m.seq for m in bus.poll("other", "topic:session-1")] == [1, 2, 3, 4, 5]


def test_concurrent_publishers_get_one_order_and_lose_nothing(store: EventStore) -> None:
    bus = MessageBus(store)

    def publisher(p: int) -> None:
        for i in range(20):
            bus.publish(msg(i, sender=f"agt_{p}", message_id=f"p{p}-{i}"))

    threads = [threading.Thread(target=publisher, args=(p,)) for p in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    messages = list(bus.replay("topic:session-1"))
    assert [m.seq for m in messages] == list(range(1, 81))
    assert len({m.message_id for m in messages}) == 80


def test_large_payloads_are_stored_once_and_referenced(store: EventStore) -> None:
    bus = MessageBus(store, inline_limit=100)
    big = {"text": "x" * 1000}
    bus.publish(Message(sender="a", topic="t", body=big))
    bus.publish(Message(sender="b", topic="t", body=big))
    context = SharedContext(store, inline_limit=100)
    context.put("s1", "doc", big)
    assert [m.body for m in bus.read("topic:t")] == [big, big]
    assert context.get("s1", "doc") == (big, 1)
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(blobs)).scalar() == 1


def test_shared_context_versions_and_scopes(store: EventStore) -> None:
    context = SharedContext(store)
    assert context.put("s1", "plan", {"steps": 2}) == 1
    assert context.put("s1", "plan", {"steps": 3}, expected_version=1) == 2
    with pytest.raises(ConcurrencyError, match="version 2"):
        context.put("s1", "plan", {"steps": 4}, expected_version=1)
    context.put("s1", "plan", {"draft": True}, scope="agt_writer")
    assert context.get("s1", "plan") == ({"steps": 3}, 2)
    assert context.get("s1", "plan", reader="agt_writer") == ({"draft": True}, 1)
    assert context.get("s1", "plan", reader="agt_other") == ({"steps": 3}, 2)
    with pytest.raises(NotFoundError):
        context.get("s1", "secret")
    context.put("s1", "notes", "mine", scope="agt_writer")
    with pytest.raises(NotFoundError):
        context.get("s1", "notes", reader="agt_other")
