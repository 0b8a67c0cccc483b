"""Claims, renewals and releases through the DB-API cursor (one fixed claim statement,
ADR 0031) lease exactly the sessions, and store exactly the rows, that Core's select and
update did; on PostgreSQL a row another transaction has locked is skipped, not waited on."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, text

from nofx.domain import SessionStatus
from nofx.runtime import leases as leases_module
from nofx.runtime.config import RuntimeConfig
from nofx.runtime.leases import Leases
from nofx.store import EventStore, Transaction
from nofx.store.schema import sessions

NOW = datetime(2026, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
ME, OTHER = "runtime-me", "runtime-other"


class Holder(Leases):
    def __init__(self, store: EventStore, worker_id: str = ME) -> None:
        self.store = store
        self.config = RuntimeConfig(worker_id=worker_id, lease_s=30.0)


def session_rows() -> list[dict[str, Any]]:
    """Every status, free / expired / held leases, created in a shuffled order (ties too)."""
    kinds = [
        (SessionStatus.REQUESTED.value, None, None),
        (SessionStatus.RUNNING.value, OTHER, NOW - timedelta(seconds=5)),  # expired: claimable
        (SessionStatus.RUNNING.value, OTHER, NOW + timedelta(seconds=5)),  # held: not
        (SessionStatus.REQUESTED.value, ME, NOW + timedelta(seconds=50)),  # held by me: not
        (SessionStatus.SUCCEEDED.value, None, None),
        (SessionStatus.FAILED.value, OTHER, NOW - timedelta(seconds=5)),
    ]
    rows = []
    for i in range(24):
        status, owner, expires = kinds[i % len(kinds)]
        rows.append(
            {
                "session_id": f"s{i:02d}",
                "tenant_id": "default",
                "pattern": "solo",
                "status": status,
                "request": {"i": i},
                "created_at": NOW - timedelta(seconds=(i * 7) % 24),
                "updated_at": NOW,
                "lease_owner": owner,
                "lease_expires_at": expires,
            }
        )
    return rows


def leases_of(conn: Any) -> list[tuple[Any, ...]]:
    query = select(
        sessions.c.session_id, sessions.c.lease_owner, sessions.c.lease_expires_at
    ).order_by(sessions.c.session_id)
    return [tuple(r) for r in conn.execute(query)]


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'leases.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    opened = EventStore(url)
    with opened.engine.begin() as conn:
        conn.execute(insert(sessions), session_rows())
    yield opened
    opened.dispose()


def run_rolled_back(store: EventStore, fn: Any) -> tuple[Any, list[tuple[Any, ...]]]:
    """What ``fn(tx)`` returned and the leases it left, in a transaction rolled back after."""
    with store.engine.connect().execution_options(nofx_write=True) as conn:
        outer = conn.begin()
        try:
            value = fn(Transaction(conn))
            return value, leases_of(conn)
        finally:
            outer.rollback()


CLAIMS = [
    (100, None, None),
    (3, None, None),
    (1, None, None),
    (0, None, None),
    (5, ["s00", "s01", "s02", "s04", "s13", "nope"], None),
    (5, [], None),
    (10, None, {"s00", "s07"}),
    (2, ["s00", "s06", "s12", "s18"], {"s06"}),
]


@pytest.mark.parametrize(("limit", "among", "exclude"), CLAIMS)
def test_the_claim_statement_leases_what_cores_select_and_update_leased(
    store: EventStore,
    monkeypatch: pytest.MonkeyPatch,
    limit: int,
    among: list[str] | None,
    exclude: set[str] | None,
) -> None:
    monkeypatch.setattr(leases_module, "utcnow", lambda: NOW)
    holder = Holder(store)
    expires = NOW + timedelta(seconds=holder.config.lease_s)
    fixed = run_rolled_back(store, lambda tx: holder._claim(tx, limit, among, exclude))
    core = run_rolled_back(
        store, lambda tx: holder._claim_core(tx, limit, among, exclude, NOW, expires)
    )
    assert fixed == core
    if limit and among != []:
        assert fixed[0], "the case claims something"


def test_a_claim_through_the_writer_takes_the_oldest_runnable_sessions(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(leases_module, "utcnow", lambda: NOW)
    holder = Holder(store)
    runnable = [
        r
        for r in session_rows()
        if r["status"] in ("requested", "running")
        and (r["lease_expires_at"] is None or r["lease_expires_at"] < NOW)
    ]
    runnable.sort(key=lambda r: r["created_at"])
    claimed = holder.claim(3)
    times = {r["session_id"]: r["created_at"] for r in runnable}
    assert [times[s] for s in claimed] == [r["created_at"] for r in runnable[:3]]
    rest = holder.claim(100, exclude={claimed[0]})  # the claimed ones are held now anyway
    assert [times[s] for s in rest] == [r["created_at"] for r in runnable[3:]]
    with store.engine.connect() as conn:
        owners = {sid: owner for sid, owner, _ in leases_of(conn)}
    assert all(owners[r["session_id"]] == ME for r in runnable)


def test_renew_and_release_touch_only_my_leases(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(leases_module, "utcnow", lambda: NOW)
    me = Holder(store)
    claimed = me.claim(100)
    assert claimed
    later = NOW + timedelta(seconds=10)
    monkeypatch.setattr(leases_module, "utcnow", lambda: later)
    me.renew_leases([*claimed, "s02"])  # s02 is another runtime's: untouched
    with store.engine.connect() as conn:
        held = {sid: (owner, at) for sid, owner, at in leases_of(conn)}
    for sid in claimed:
        owner, at = held[sid]
        assert owner == ME
        assert at.replace(tzinfo=UTC) == later + timedelta(seconds=30)
    assert held["s02"][0] == OTHER
    me.release(claimed[0])
    Holder(store, OTHER).release(claimed[1])  # not its lease: nothing changes
    with store.engine.connect() as conn:
        after = {sid: (owner, at) for sid, owner, at in leases_of(conn)}
    assert after[claimed[0]] == (None, None)
    assert after[claimed[1]][0] == ME


def test_a_released_lease_in_a_commit_group_is_stored_as_core_stored_it(
    store: EventStore,
) -> None:
    params = [{"b_session_id": "s03", "b_owner": ME}, {"b_session_id": "s02", "b_owner": ME}]
    fixed = run_rolled_back(store, lambda tx: leases_module.RELEASE.execute(tx.conn, params))
    core = run_rolled_back(store, lambda tx: tx.conn.execute(leases_module.RELEASE.core, params))
    assert fixed[1] == core[1]
    assert dict((s, o) for s, o, _ in fixed[1])["s03"] is None


def test_on_postgresql_a_claim_skips_a_session_another_transaction_holds(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(leases_module, "utcnow", lambda: NOW)
    store = EventStore(pg_url)
    try:
        with store.engine.begin() as conn:
            conn.execute(insert(sessions), session_rows())
        oldest = Holder(store).claim(100)
        with store.engine.begin() as conn:  # give them all back
            conn.execute(
                sessions.update()
                .where(sessions.c.session_id.in_(oldest))
                .values(lease_owner=None, lease_expires_at=None)
            )
        locker = store.engine.connect()
        outer = locker.begin()
        locker.execute(
            text("SELECT session_id FROM sessions WHERE session_id = :s FOR UPDATE"),
            {"s": oldest[0]},
        )
        result: list[str] = []
        claimer = threading.Thread(target=lambda: result.extend(Holder(store).claim(100)))
        claimer.start()
        claimer.join(20)
        assert not claimer.is_alive(), "the claim waited on the locked row"
        outer.rollback()
        locker.close()
        assert result == oldest[1:]
    finally:
        store.dispose()
