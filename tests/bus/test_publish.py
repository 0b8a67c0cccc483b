"""Batched publishing: one writer operation per channel per loop turn, still one gap-free
order, dedup by id, one event per message, and a race between two stores resolved by retry."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.exc import IntegrityError

from nofx.bus import MessageBus, SharedContext
from nofx.bus.publish import BATCH_MAX, PUBLISH_ATTEMPTS, channel_stream
from nofx.domain import Message
from nofx.errors import ConcurrencyError, ValidationError
from nofx.store import EventStore


def msg(i: int, topic: str = "session-1", **kw) -> Message:
    return Message(sender=kw.pop("sender", "agt_a"), topic=topic, body={"i": i}, **kw)


def published(store: EventStore) -> list:
    return [e for e in store.read_all(limit=100_000) if e.type == "MessagePublished"]


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ids=st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=150),
    topics=st.integers(min_value=1, max_value=3),
)
def test_a_loop_turn_of_publishes_is_numbered_gap_free_and_deduplicated(
    tmp_path_factory, ids: list[int], topics: int
) -> None:
    store = EventStore(f"sqlite:///{tmp_path_factory.mktemp('bus') / 'e.db'}")
    bus = MessageBus(store)

    async def everyone() -> list:
        return await asyncio.gather(
            *(bus.publish_async(msg(i, topic=f"t{i % topics}", message_id=f"m{i}")) for i in ids)
        )

    stored = asyncio.run(everyone())
    unique = list(dict.fromkeys(ids))
    for i, answer in zip(ids, stored, strict=True):
        assert answer.message_id == f"m{i}" and answer.body == {"i": i}
    for t in range(topics):
        mine = [i for i in unique if i % topics == t]
        replayed = list(bus.replay(f"topic:t{t}"))
        assert [m.seq for m in replayed] == list(range(1, len(mine) + 1))
        assert [m.message_id for m in replayed] == [f"m{i}" for i in mine]
    events = published(store)
    assert len(events) == len(unique)  # one event per stored message, none for repeats
    for e in events:
        channel = e.payload["messaging.destination.name"]
        assert e.stream_id == channel_stream("default", channel)
    store.dispose()


def test_more_than_a_batch_goes_to_the_writer_in_several_operations(store: EventStore) -> None:
    bus = MessageBus(store)
    n = BATCH_MAX * 3 + 5

    async def everyone() -> list:
        return await asyncio.gather(*(bus.publish_async(msg(i)) for i in range(n)))

    before = store.writer.stats.operations
    stored = asyncio.run(everyone())
    assert [m.seq for m in stored] == list(range(1, n + 1))
    assert store.writer.stats.operations - before == 4


def test_a_repeated_id_returns_the_original_on_every_path(store: EventStore) -> None:
    bus = MessageBus(store)
    first = bus.publish(msg(1, message_id="same"))
    again = asyncio.run(bus.publish_async(msg(2, message_id="same")))
    written = bus.publish_nowait(msg(3, message_id="same")).result()
    assert again == first and written.value == [first]
    assert [m.body for m in bus.read("topic:session-1")] == [{"i": 1}]
    assert len(published(store)) == 1


def test_a_body_too_deep_is_refused_before_the_batch(store: EventStore) -> None:
    bus = MessageBus(store)
    deep: dict = {}
    node = deep
    for _ in range(200):
        node["x"] = {}
        node = node["x"]

    async def both() -> list:
        return await asyncio.gather(
            bus.publish_async(Message(sender="a", topic="t", body=deep)),
            bus.publish_async(msg(1, topic="t")),
            return_exceptions=True,
        )

    refused, fine = asyncio.run(both())
    assert isinstance(refused, ValidationError)
    assert fine.seq == 1


def race(url: str) -> None:
    """Two processes' writers (two stores) publishing to one channel: a batch that loses the
    race for its numbers is sent again; the channel stays gap-free and nothing is lost."""
    stores = [EventStore(url), EventStore(url)]

    def publisher(p: int) -> None:
        bus = MessageBus(stores[p])

        async def run() -> None:
            for round_ in range(5):
                await asyncio.gather(
                    *(bus.publish_async(msg(i, message_id=f"p{p}-{round_}-{i}")) for i in range(30))
                )

        asyncio.run(run())

    threads = [threading.Thread(target=publisher, args=(p,)) for p in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    replayed = list(MessageBus(stores[0]).replay("topic:session-1"))
    assert [m.seq for m in replayed] == list(range(1, 301))
    assert len({m.message_id for m in replayed}) == 300
    for s in stores:
        s.dispose()


def test_two_stores_on_one_sqlite_file_keep_one_order(tmp_path: Path) -> None:
    race(f"sqlite:///{tmp_path / 'e.db'}")


def test_two_stores_on_postgresql_race_for_numbers_and_keep_one_order(pg_url: str) -> None:
    race(pg_url)


class LosesRaces(EventStore):
    """A store whose first ``lose`` publishes fail as if another process took the numbers."""

    def __init__(self, url: str, lose: int) -> None:
        super().__init__(url)
        self.lose = lose

    def submit(self, op):  # type: ignore[no-untyped-def]
        if self.lose > 0:
            self.lose -= 1
            failed: concurrent.futures.Future = concurrent.futures.Future()
            failed.set_exception(IntegrityError("INSERT", {}, Exception("uq_comms_channel_seq")))
            return failed
        return super().submit(op)


def test_a_batch_that_loses_a_race_is_sent_again(tmp_path: Path) -> None:
    store = LosesRaces(f"sqlite:///{tmp_path / 'e.db'}", lose=2)
    stored = asyncio.run(MessageBus(store).publish_async(msg(1)))
    assert stored.seq == 1 and store.lose == 0
    store.dispose()


def test_a_batch_that_always_loses_says_so(tmp_path: Path) -> None:
    store = LosesRaces(f"sqlite:///{tmp_path / 'e.db'}", lose=PUBLISH_ATTEMPTS)
    with pytest.raises(ConcurrencyError):
        asyncio.run(MessageBus(store).publish_async(msg(1)))
    store.dispose()


def test_shared_context_put_async_versions_like_put(store: EventStore) -> None:
    context = SharedContext(store)
    assert asyncio.run(context.put_async("s1", "k", {"v": 1})) == 1
    assert context.put("s1", "k", {"v": 2}, expected_version=1) == 2
    with pytest.raises(ConcurrencyError):
        asyncio.run(context.put_async("s1", "k", {"v": 3}, expected_version=1))
    assert context.get("s1", "k") == ({"v": 2}, 2)
