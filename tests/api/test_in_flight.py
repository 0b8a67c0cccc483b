"""The per-tenant ceiling on sessions requested or running (issue 12: counted by the writer,
once per commit group, instead of a scan of the tenant's sessions per request)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import event

from nofx.domain import SessionRequest, Task
from nofx.fleet import demo_fleet
from nofx.registry import AgentRegistry
from nofx.sessions import (
    CEILING_HOLD_S,
    SessionService,
    TooManyInFlight,
    in_flight_by_tenant,
    open_sessions,
)
from nofx.store import EventStore


def request(tenant: str = "alpha", i: int = 0, **kw: object) -> SessionRequest:
    return SessionRequest(
        task=Task(prompt=f"p{i}", capability="code.generate"), tenant_id=tenant, **kw
    )


@pytest.fixture
def service(store: EventStore) -> SessionService:
    registry = AgentRegistry(store)
    for tenant in ("alpha", "beta"):
        for spec in demo_fleet(tenant_id=tenant)[:2]:
            registry.register(spec)
    return SessionService(store, registry)


def test_concurrent_submissions_cannot_pass_on_one_stale_count(service: SessionService) -> None:
    """Twenty at once against a ceiling of five: exactly five are written, whatever the
    grouping (a count read before the write let every concurrent request through)."""

    async def burst() -> list[object]:
        return await asyncio.gather(
            *(service.submit_async(request(i=i), max_in_flight=5) for i in range(20)),
            return_exceptions=True,
        )

    outcomes = asyncio.run(burst())
    refused = [o for o in outcomes if isinstance(o, TooManyInFlight)]
    assert len(refused) == 15 and len(outcomes) - len(refused) == 5
    assert refused[0].http_status == 429 and int(refused[0].headers["Retry-After"]) >= 1
    assert "NOFX_API_MAX_SESSIONS_IN_FLIGHT" in str(refused[0])
    with service.store.engine.connect() as conn:
        assert in_flight_by_tenant(conn) == {"alpha": 5}


def test_the_ceiling_is_per_tenant_and_counts_only_open_sessions(
    service: SessionService, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = service.submit(request(i=0), max_in_flight=2)
    service.submit(request(i=1), max_in_flight=2)
    with pytest.raises(TooManyInFlight):
        service.submit(request(i=2), max_in_flight=2)
    assert service.submit(request("beta"), max_in_flight=2).tenant_id == "beta"
    # refused again at once, without queueing a write, for a moment after a refusal
    writes = []
    monkeypatch.setattr(service.store, "write", lambda op: writes.append(op))
    with pytest.raises(TooManyInFlight):
        service.submit(request(i=3), max_in_flight=2)
    assert writes == []
    monkeypatch.undo()
    service.cancel(first.session_id)  # a finished session frees its place
    service._refused_until.clear()  # as CEILING_HOLD_S later
    assert service.submit(request(i=4), max_in_flight=2).status.value == "requested"
    assert 0 < CEILING_HOLD_S <= 1.0
    assert service.submit(request(i=5)).tenant_id == "alpha"  # no ceiling given: none applied


def test_a_repeated_idempotency_key_returns_its_session(service: SessionService) -> None:
    async def twice() -> tuple[object, object]:
        a = await service.submit_async(request(idempotency_key="k1"), max_in_flight=1)
        b = await service.submit_async(request(idempotency_key="k1"), max_in_flight=1)
        return a, b

    a, b = asyncio.run(twice())
    assert a.session_id == b.session_id  # type: ignore[attr-defined]


def test_the_count_uses_the_status_index_not_a_scan_of_the_tenant(store: EventStore) -> None:
    """SQLite planned ``tenant_id = ? AND status IN (...)`` on the tenant index: every session
    the tenant ever had, read per request. The grouped count reads only open sessions."""
    if store.dialect != "sqlite":
        pytest.skip("a SQLite query plan")
    issued: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, *args):  # type: ignore[no-untyped-def]
        issued.append((statement, parameters))

    with store.engine.connect() as conn:
        event.listen(conn, "before_cursor_execute", record)
        in_flight_by_tenant(conn)
        event.remove(conn, "before_cursor_execute", record)
        [(sql, params)] = [(q, p) for q, p in issued if "FROM sessions" in q]
        plan = " ".join(
            str(row) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params)
        )
    assert "ix_sessions_status_created" in plan and "ix_sessions_tenant" not in plan


def test_the_per_tenant_count_is_read_only_when_the_total_cannot_decide(
    service: SessionService,
) -> None:
    grouped: list[str] = []

    def record(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        if "GROUP BY" in statement and "FROM sessions" in statement:
            grouped.append(statement)

    event.listen(service.store.engine, "before_cursor_execute", record)
    try:
        for i in range(3):
            service.submit(request("beta", i), max_in_flight=3)
        assert grouped == []  # 0, 1, 2 open in all: below 3, whoever asks
        # 3 open in all, none of them alpha's: only the per-tenant count can say alpha is free
        assert service.submit(request("alpha"), max_in_flight=3).tenant_id == "alpha"
        assert len(grouped) == 1
        with pytest.raises(TooManyInFlight):
            service.submit(request("beta", 9), max_in_flight=3)
    finally:
        event.remove(service.store.engine, "before_cursor_execute", record)


def test_the_total_is_counted_from_the_index_alone(store: EventStore) -> None:
    if store.dialect != "sqlite":
        pytest.skip("a SQLite query plan")
    issued: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, *args):  # type: ignore[no-untyped-def]
        issued.append((statement, parameters))

    with store.engine.connect() as conn:
        event.listen(conn, "before_cursor_execute", record)
        assert open_sessions(conn) == 0
        event.remove(conn, "before_cursor_execute", record)
        [(sql, params)] = [(q, p) for q, p in issued if "FROM sessions" in q]
        plan = " ".join(
            str(row) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params)
        )
    assert "COVERING INDEX ix_sessions_status_created" in plan
