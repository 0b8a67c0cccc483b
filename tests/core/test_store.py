"""The event store: ordering, idempotency, optimistic concurrency, atomicity, migrations."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import bindparam, inspect, select

from nofx.domain import NewEvent
from nofx.errors import ConcurrencyError
from nofx.store import EventStore, Transaction, schema
from nofx.store.migrate import current_revision
from nofx.store.reads import ReadStatement
from nofx.store.schema import metadata
from nofx.store.writer import Append, Call
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


# -- the group-commit writer ----------------------------------------------------------------
def hold_writer(store: EventStore) -> threading.Event:
    """Park the writer inside an operation until the returned event is set, so that whatever
    is queued meanwhile is committed as one group."""
    parked, release = threading.Event(), threading.Event()

    def park(_tx: Transaction) -> None:
        parked.set()
        release.wait(10)

    store.submit(Call(park))
    assert parked.wait(10)
    return release


def test_a_group_commits_everyone_and_a_conflict_fails_only_its_caller(store: EventStore) -> None:
    store.append("moved", "t", "default", [NewEvent(type="A")])
    groups_before = store.writer.stats.groups
    release = hold_writer(store)
    futures = [
        store.submit(Append(f"s{i % 3}", "t", "default", [NewEvent(type="E", payload={"i": i})]))
        for i in range(30)
    ]
    stale = store.submit(Append("moved", "t", "default", [NewEvent(type="B")], expected_version=0))
    keyed = [
        store.submit(
            Append(
                "k", "t", "default", [NewEvent(type="K", payload={"n": n}, idempotency_key="key")]
            )
        )
        for n in range(2)
    ]
    release.set()
    written = [f.result(10).events[0] for f in futures]
    with pytest.raises(ConcurrencyError, match="expected 0"):
        stale.result(10)
    first, second = (f.result(10).events[0] for f in keyed)
    # one group after the parked one: every caller shared a single commit
    assert store.writer.stats.groups - groups_before == 2
    assert store.writer.stats.fallbacks >= 1
    for stream in ("s0", "s1", "s2"):
        assert [e.seq for e in store.read_stream(stream)] == list(range(1, 11))
    assert sorted(e.payload["i"] for e in written) == list(range(30))
    # the positions handed back are the ones stored
    stored = {e.position: e.payload.get("i") for e in store.read_all(limit=1000)}
    assert all(stored[e.position] == e.payload["i"] for e in written)
    assert first.position == second.position and second.payload == {"n": 0}
    assert [e.type for e in store.read_stream("moved")] == ["A"]
    assert store.count_events("k") == 1


def test_a_caller_is_answered_only_after_its_commit(store: EventStore) -> None:
    """What the writer acknowledges is visible to a fresh connection: it was committed."""
    seen_by_other_connection = []

    def check(done) -> None:
        event = done.result().events[0]
        seen_by_other_connection.append(store.event_by_key(event.idempotency_key) is not None)

    futures = []
    for i in range(50):
        future = store.submit(
            Append("c", "t", "default", [NewEvent(type="E", idempotency_key=f"c/{i}")])
        )
        future.add_done_callback(check)
        futures.append(future)
    for future in futures:
        future.result(10)
    store.call(lambda tx: None)  # the writer settles a group (callbacks too) before the next
    assert seen_by_other_connection == [True] * 50


def test_a_failing_operation_does_not_take_its_group_down(store: EventStore) -> None:
    def broken(_tx: Transaction) -> None:
        raise ValueError("a bug in one caller")

    release = hold_writer(store)
    good = store.submit(Append("g", "t", "default", [NewEvent(type="E")]))
    bad = store.submit(Call(broken))
    release.set()
    assert good.result(10).events[0].seq == 1
    with pytest.raises(ValueError, match="a bug"):
        bad.result(10)


async def test_async_callers_await_the_commit_without_blocking_the_loop(
    store: EventStore,
) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    beat = asyncio.create_task(ticker())
    written = await asyncio.gather(
        *(
            store.append_async(f"a{i % 10}", "t", "default", [NewEvent(type="E")])
            for i in range(500)
        )
    )
    beat.cancel()
    assert sorted(len(store.read_stream(f"a{i}")) for i in range(10)) == [50] * 10
    assert len({w[0].position for w in written}) == 500
    assert ticks > 10  # the loop ran other work while the writes were committed


def test_durability_is_a_setting_with_a_meaning(tmp_path, monkeypatch) -> None:
    def synchronous(store: EventStore) -> int:
        with store.engine.connect() as conn:
            return int(conn.exec_driver_sql("PRAGMA synchronous").scalar())

    monkeypatch.delenv("NOFX_DURABILITY", raising=False)
    full = EventStore(f"sqlite:///{tmp_path / 'full.db'}")
    assert full.durability == "full" and synchronous(full) == 2  # FULL: fsync every commit
    assert "fsync" in full.durability_meaning
    full.dispose()
    monkeypatch.setenv("NOFX_DURABILITY", "normal")
    normal = EventStore(f"sqlite:///{tmp_path / 'normal.db'}")
    assert normal.durability == "normal" and synchronous(normal) == 1
    normal.dispose()
    monkeypatch.setenv("NOFX_DURABILITY", "sometimes")
    with pytest.raises(ValueError, match="use 'full'"):
        EventStore(f"sqlite:///{tmp_path / 'bad.db'}")


def test_a_disposed_store_refuses_writes_with_a_clear_message(tmp_path) -> None:
    store = EventStore(f"sqlite:///{tmp_path / 'd.db'}")
    store.append("s", "t", "default", [NewEvent(type="E")])
    store.dispose()
    with pytest.raises(RuntimeError, match="open a new EventStore"):
        store.append("s", "t", "default", [NewEvent(type="E")])


def test_the_writer_cannot_wait_on_itself(store: EventStore) -> None:
    def nested(_tx: Transaction) -> None:
        store.append("x", "t", "default", [NewEvent(type="E")])

    with pytest.raises(RuntimeError, match="cannot wait on itself"):
        store.call(nested)


@pytest.mark.postgres
def test_group_commit_on_postgresql() -> None:
    url = postgres_url()
    if not url:
        pytest.skip("NOFX_TEST_POSTGRES_URL is not set (CI sets it; locally export it to run this)")
    import uuid

    for durability, setting in (("full", "on"), ("normal", "off")):
        store = EventStore(url, durability=durability)  # type: ignore[arg-type]
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == setting
        stream = f"pg-{uuid.uuid4().hex}"
        store.append(stream, "t", "default", [NewEvent(type="A")])
        release = hold_writer(store)
        futures = [
            store.submit(Append(stream, "t", "default", [NewEvent(type="E", payload={"i": i})]))
            for i in range(20)
        ]
        stale = store.submit(
            Append(stream, "t", "default", [NewEvent(type="X")], expected_version=0)
        )
        release.set()
        assert sorted(f.result(10).events[0].seq for f in futures) == list(range(2, 22))
        with pytest.raises(ConcurrencyError):
            stale.result(10)
        assert [e.seq for e in store.read_stream(stream)] == list(range(1, 22))
        store.dispose()


# -- hot reads through the DB-API cursor (ADR 0029) ----------------------------------------


def check_read_statement_returns_what_core_returns(store: EventStore) -> None:
    stream = f"rs-{uuid.uuid4().hex}"
    store.append(stream, "t", "tenant-1", [NewEvent(type="A", payload={"n": 2**70, "s": "é"})])
    store.append(stream, "t", "tenant-1", [NewEvent(type="B", payload={"f": 0.1})])
    store.append(f"{stream}-x", "t", "tenant-2", [NewEvent(type="C")])
    col = schema.events.c
    first = store.read_stream(stream)[0]
    query = (
        select(schema.events)
        .where(col.tenant_id == bindparam("tenant"), col.occurred_at >= bindparam("since"))
        .order_by(col.position)
        .limit(bindparam("n"))
    )
    params = {"tenant": "tenant-1", "since": first.occurred_at, "n": 10}
    with store.engine.connect() as conn:
        expected = [tuple(r) for r in conn.execute(query, params)]
    statement = ReadStatement(query)
    for _ in range(2):  # the first run learns the result processors; the second reuses them
        assert statement.rows(store.engine, params) == expected
    assert [r[4] for r in expected] == ["A", "B"]  # the tenant bound: none of tenant-2's
    assert statement.first(store.engine, {**params, "tenant": "nobody"}) is None


def test_read_statement_returns_what_core_returns_on_sqlite(store: EventStore) -> None:
    check_read_statement_returns_what_core_returns(store)


@pytest.mark.postgres
def test_read_statement_returns_what_core_returns_on_postgresql(pg_url: str) -> None:
    store = EventStore(pg_url)
    try:
        check_read_statement_returns_what_core_returns(store)
        assert "ix_sessions_tenant_status" in {
            i["name"] for i in inspect(store.engine).get_indexes("sessions")
        }
    finally:
        store.dispose()


def test_a_read_statement_refuses_a_statement_that_is_not_fixed(store: EventStore) -> None:
    query = select(schema.events).where(
        schema.events.c.stream_id.in_(bindparam("ids", expanding=True))
    )
    with pytest.raises(ValueError, match="not a fixed statement"):
        ReadStatement(query).rows(store.engine, {"ids": ["a"]})


def test_sessions_are_indexed_by_tenant_and_status(store: EventStore) -> None:
    """A tenant's sessions of one status come from the index, not from every session the
    tenant ever had."""
    indexes = {i["name"]: i["column_names"] for i in inspect(store.engine).get_indexes("sessions")}
    assert indexes["ix_sessions_tenant_status"] == ["tenant_id", "status", "created_at"]
    with store.engine.connect() as conn:
        plan = conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN SELECT count(*) FROM sessions "
            "WHERE tenant_id = 'a' AND status IN ('requested', 'running')"
        ).fetchall()
    assert "COVERING INDEX ix_sessions_tenant_status" in str(plan)


def test_a_read_statement_can_parse_a_text_column_its_own_way(store: EventStore) -> None:
    store.append("own", "t", "default", [NewEvent(type="A", payload={"n": 1})])
    seen: list[object] = []

    def parse(text: str | bytes) -> object:
        seen.append(text)
        return {"parsed": True}

    query = select(schema.events.c.payload).where(schema.events.c.stream_id == "own")
    assert ReadStatement(query, text={"payload": parse}).rows(store.engine) == [({"parsed": True},)]
    assert seen == ['{"n":1}']
    with pytest.raises(ValueError, match="not columns"):
        ReadStatement(query, text={"nope": parse})
