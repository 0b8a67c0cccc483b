"""The event store: ordering, idempotency, optimistic concurrency, atomicity, migrations."""

from __future__ import annotations

import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import inspect

from nofx.domain import NewEvent
from nofx.errors import ConcurrencyError
from nofx.store import EventStore
from nofx.store.migrate import current_revision
from nofx.store.schema import metadata
from tests.conftest import postgres_url


def test_appends_number_each_stream_from_one(store: EventStore) -> None:
    store.append("s-a", "t", "default", [NewEvent(type="A"), NewEvent(type="B")])
    store.append("s-b", "t", "default", [NewEvent(type="C")])
    store.append("s-a", "t", "default", [NewEvent(type="D")])
    assert [e.seq for e in store.read_stream("s-a")] == [1, 2, 3]
    assert [e.type for e in store.read_stream("s-a")] == ["A", "B", "D"]
    assert [e.type for e in store.read_all()] == ["A", "B", "C", "D"]
    assert [e.type for e in store.read_stream("s-a", after_seq=2)] == ["D"]


def test_idempotency_key_returns_the_first_event(store: EventStore) -> None:
    first = store.append(
        "s", "t", "default", [NewEvent(type="A", payload={"n": 1}, idempotency_key="k")]
    )
    again = store.append(
        "s", "t", "default", [NewEvent(type="A", payload={"n": 2}, idempotency_key="k")]
    )
    assert again[0].position == first[0].position
    assert again[0].payload == {"n": 1}
    assert store.count_events() == 1
    assert store.event_by_key("k").payload == {"n": 1}
    assert store.event_by_key("missing") is None


def test_expected_version_mismatch_is_refused(store: EventStore) -> None:
    store.append("s", "t", "default", [NewEvent(type="A")], expected_version=0)
    with pytest.raises(ConcurrencyError, match="expected 0"):
        store.append("s", "t", "default", [NewEvent(type="B")], expected_version=0)
    assert store.count_events("s") == 1


def test_a_failed_transaction_writes_nothing(store: EventStore) -> None:
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.append("s", "t", "default", [NewEvent(type="A")])
        raise RuntimeError("crash half-way")
    assert store.count_events() == 0


def test_subscribers_see_committed_events_only(store: EventStore) -> None:
    seen: list[str] = []
    unsubscribe = store.subscribe(lambda events: seen.extend(e.type for e in events))
    store.append("s", "t", "default", [NewEvent(type="A")])
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.append("s", "t", "default", [NewEvent(type="B")])
        raise RuntimeError
    unsubscribe()
    store.append("s", "t", "default", [NewEvent(type="C")])
    assert seen == ["A"]


def test_concurrent_writers_never_lose_or_duplicate(store: EventStore) -> None:
    def writer(n: int) -> None:
        for i in range(25):
            store.append("shared", "t", "default", [NewEvent(type="W", payload={"w": n, "i": i})])

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = store.read_stream("shared")
    assert [e.seq for e in events] == list(range(1, 101))
    assert len({(e.payload["w"], e.payload["i"]) for e in events}) == 100


def test_migrations_create_exactly_the_declared_schema(store: EventStore) -> None:
    assert current_revision(store.engine) is not None
    tables = set(inspect(store.engine).get_table_names())
    assert set(metadata.tables) <= tables


def test_read_all_filters_by_type_and_time(store: EventStore) -> None:
    store.append("s", "session", "default", [NewEvent(type="A")])
    store.append("a", "agent", "default", [NewEvent(type="B")])
    assert [e.type for e in store.read_all(stream_type="agent")] == ["B"]
    first = store.read_all()[0]
    assert len(store.read_all(since=first.occurred_at)) == 2
    assert store.last_position() == 2


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=st.lists(
        st.tuples(st.sampled_from(["s1", "s2", "s3"]), st.integers(min_value=1, max_value=4)),
        min_size=1,
        max_size=12,
    )
)
def test_global_and_stream_order_are_consistent(tmp_path_factory, batches) -> None:
    store = EventStore(f"sqlite:///{tmp_path_factory.mktemp('es') / 'e.db'}")
    expected: dict[str, int] = {}
    for stream, n in batches:
        store.append(stream, "t", "default", [NewEvent(type="E") for _ in range(n)])
        expected[stream] = expected.get(stream, 0) + n
    everything = store.read_all(limit=10_000)
    positions = [e.position for e in everything]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    for stream, count in expected.items():
        seqs = [e.seq for e in everything if e.stream_id == stream]
        assert seqs == list(range(1, count + 1))
    store.dispose()


@pytest.mark.postgres
def test_the_same_store_code_runs_on_postgresql() -> None:
    url = postgres_url()
    if not url:
        pytest.skip("NOFX_TEST_POSTGRES_URL is not set (CI sets it; locally export it to run this)")
    import uuid

    store = EventStore(url)
    stream = f"pg-{uuid.uuid4().hex}"
    store.append(
        stream,
        "t",
        "default",
        [NewEvent(type="A", idempotency_key=f"{stream}/a"), NewEvent(type="B")],
    )
    store.append(stream, "t", "default", [NewEvent(type="A", idempotency_key=f"{stream}/a")])
    assert [e.type for e in store.read_stream(stream)] == ["A", "B"]
    with pytest.raises(ConcurrencyError):
        store.append(stream, "t", "default", [NewEvent(type="C")], expected_version=1)
    assert store.dialect == "postgresql"
    store.dispose()
