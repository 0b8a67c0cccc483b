"""The hot reads (nofx/api/reads.py): the same answers as before, each tenant's own.

Session rows go to JSON without the pydantic models; these tests hold them to the model's
bytes (on SQLite and on PostgreSQL), agents to the registry's own reads, and both to the
tenant of the caller, through every path: one item, a page, a filtered page, and the next
page behind a cursor.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from nofx.api import reads
from nofx.api.app import create_app
from nofx.api.schemas import SessionPage
from nofx.domain import AgentSpec, Capability, SessionRequest, SessionStatus, Task
from nofx.registry import AgentRegistry
from nofx.runtime import Runtime, RuntimeConfig
from nofx.sessions import SessionService
from nofx.store import EventStore
from nofx.store.schema import sessions as sessions_table

REQUESTS = [
    SessionRequest(task=Task(prompt="write a parser", capability="code.generate")),
    SessionRequest(
        task=Task(
            prompt='überprüfe «das» \u2603 \n\t"quoted"',
            capability="code.generate",
            complexity=1,
            input_tokens=2_000_000,
        ),
        budget_usd=3,
        deadline_s=0.25,
        optimize="cost",
        max_attempts=10,
        wait_for_recovery_s=0,
    ),
    SessionRequest(
        task=Task(prompt="x", capability="code.generate", complexity=0.1),
        budget_usd=1e-5,
        idempotency_key="k-1",
    ),
]


def world(store: EventStore) -> dict[str, list[str]]:
    """Tenants a and b, each with sessions: some finished by a runtime, some only requested."""
    registry = AgentRegistry(store)
    service = SessionService(store, registry)
    for tenant in ("a", "b"):
        for i, extra in enumerate(("code.review", "docs.write", None)):
            caps = [Capability(name="code.generate", proficiency=2 + i)]
            if extra:
                caps.append(Capability(name=extra, proficiency=3))
            registry.register(
                AgentSpec(name=f"coder-{tenant}-{i}", tenant_id=tenant, capabilities=caps)
            )
    ids: dict[str, list[str]] = {"a": [], "b": []}
    for tenant in ("a", "b"):
        for request in REQUESTS:
            ids[tenant].append(
                service.submit(request.model_copy(update={"tenant_id": tenant})).session_id
            )
    asyncio.run(
        Runtime(store, registry, config=RuntimeConfig(time_scale=0.0, seed=3)).run_pending()
    )
    for tenant in ("a", "b"):  # and some still requested, after the run
        for request in REQUESTS[:2]:
            ids[tenant].append(
                service.submit(request.model_copy(update={"tenant_id": tenant})).session_id
            )
    return ids


def model_page(service: SessionService, tenant: str, **kw) -> bytes:
    return SessionPage(items=service.list(tenant_id=tenant, **kw)).model_dump_json().encode()


def check_same_as_the_model(store: EventStore) -> None:
    ids = world(store)
    service = SessionService(store, AgentRegistry(store))
    statuses = set()
    for tenant, mine in ids.items():
        for sid in mine:
            model = service.get(sid, tenant_id=tenant)
            statuses.add(model.status)
            assert reads.session_json(store, sid, tenant) == model.model_dump_json().encode()
        assert reads.session_page_json(
            store, tenant, status=None, limit=100, before=None
        ) == model_page(service, tenant, limit=100)
        for status in SessionStatus:
            assert reads.session_page_json(
                store, tenant, status=status, limit=100, before=None
            ) == model_page(service, tenant, status=status, limit=100)
    assert len(statuses) >= 2  # finished and requested sessions both went through


def check_agents_as_the_registry_reads_them(store: EventStore) -> None:
    registry = AgentRegistry(store)
    for tenant in ("a", "b"):
        everyone = registry.list(tenant_id=tenant)
        assert len(everyone) == 3
        for a in everyone:
            assert reads.agent(store, a.agent_id, tenant) == registry.get(a.agent_id)
        for capability, level in ((None, 1), ("code.generate", 3), ("code.review", 1)):
            for after in (None, everyone[0].agent_id):
                assert reads.agent_page(
                    store,
                    tenant,
                    capability=capability,
                    min_proficiency=level,
                    limit=10,
                    after_id=after,
                ) == registry.list(
                    tenant_id=tenant,
                    capability=capability,
                    min_proficiency=level,
                    limit=10,
                    after_id=after,
                )


def test_rows_become_the_models_json_on_sqlite(store: EventStore) -> None:
    check_same_as_the_model(store)
    check_agents_as_the_registry_reads_them(store)


@pytest.mark.postgres
def test_rows_become_the_models_json_on_postgresql(pg_url: str) -> None:
    store = EventStore(pg_url)
    try:
        check_same_as_the_model(store)
        check_agents_as_the_registry_reads_them(store)
    finally:
        store.dispose()


def test_a_row_of_another_shape_goes_through_the_model(store: EventStore) -> None:
    """A stored request without today's fields (an older row) is read as the model reads
    it, defaults filled in, rather than refused or half-written."""
    ids = world(store)
    sid = ids["a"][0]
    old = {"task": {"prompt": "old", "capability": "code.generate"}, "pattern": "solo"}
    with store.engine.begin() as conn:
        conn.execute(
            update(sessions_table).where(sessions_table.c.session_id == sid).values(request=old)
        )
    body = json.loads(reads.session_json(store, sid, "a"))
    assert body["task"] == {
        "prompt": "old",
        "capability": "code.generate",
        "complexity": 0.5,
        "input_tokens": 800,
    }
    assert body["max_attempts"] == 3 and body["optimize"] == "balanced"
    page = json.loads(reads.session_page_json(store, "a", status=None, limit=100, before=None))
    assert [s for s in page["items"] if s["session_id"] == sid] == [body]


@pytest.fixture
def client(store: EventStore) -> Iterator[tuple[TestClient, dict[str, list[str]]]]:
    ids = world(store)
    with TestClient(create_app(store=store, auth_required=False)) as c:
        yield c, ids


def test_a_tenant_reads_only_its_own_sessions_through_every_path(client) -> None:
    c, ids = client
    for me, other in (("a", "b"), ("b", "a")):
        headers = {"X-Tenant-ID": me}
        for sid in ids[other]:
            gone = c.get(f"/api/v1/orchestration/sessions/{sid}", headers=headers)
            assert gone.status_code == 404, gone.text
        for sid in ids[me]:
            mine = c.get(f"/api/v1/orchestration/sessions/{sid}", headers=headers)
            assert mine.status_code == 200 and mine.json()["tenant_id"] == me
        seen: list[str] = []
        for status in (None, *SessionStatus):
            params: dict[str, str | int] = {"limit": 1}
            if status is not None:
                params["status"] = status.value
            while True:  # page by page: the cursor leads to the same tenant's next page
                page = c.get("/api/v1/orchestration/sessions", params=params, headers=headers)
                assert page.status_code == 200, page.text
                body = page.json()
                assert all(s["tenant_id"] == me for s in body["items"])
                if status is None:
                    seen += [s["session_id"] for s in body["items"]]
                if not body["next_cursor"]:
                    break
                params["cursor"] = body["next_cursor"]
        assert sorted(seen) == sorted(ids[me])  # every session of mine, none of the other's


def test_a_cursor_does_not_carry_a_tenant(client) -> None:
    """A cursor is a position, not a permission: handed to another tenant, it pages through
    that tenant's own sessions."""
    c, ids = client
    first = c.get(
        "/api/v1/orchestration/sessions", params={"limit": 1}, headers={"X-Tenant-ID": "a"}
    ).json()
    later = c.get(
        "/api/v1/orchestration/sessions",
        params={"limit": 100, "cursor": first["next_cursor"]},
        headers={"X-Tenant-ID": "b"},
    )
    assert later.status_code == 200
    assert {s["tenant_id"] for s in later.json()["items"]} <= {"b"}
    assert not {s["session_id"] for s in later.json()["items"]} & set(ids["a"])


def test_a_tenant_reads_only_its_own_agents_through_every_path(client, store) -> None:
    c, _ = client
    registry = AgentRegistry(store)
    ids = {t: [a.agent_id for a in registry.list(tenant_id=t)] for t in ("a", "b")}
    for me, other in (("a", "b"), ("b", "a")):
        headers = {"X-Tenant-ID": me}
        for aid in ids[other]:
            assert c.get(f"/api/v1/agents/{aid}", headers=headers).status_code == 404
        for aid in ids[me]:
            assert c.get(f"/api/v1/agents/{aid}", headers=headers).json()["tenant_id"] == me
        for capability in (None, "code.generate", "code.review"):
            params: dict[str, str | int] = {"limit": 1}
            if capability:
                params["capability"] = capability
            seen: list[str] = []
            while True:
                body = c.get("/api/v1/agents", params=params, headers=headers).json()
                assert all(a["tenant_id"] == me for a in body["items"])
                seen += [a["agent_id"] for a in body["items"]]
                if not body["next_cursor"]:
                    break
                params["cursor"] = body["next_cursor"]
            assert seen and set(seen) <= set(ids[me])
            if capability is None:
                assert sorted(seen) == sorted(ids[me])


def test_a_stored_request_orjson_refuses_is_read_by_the_standard_library() -> None:
    assert reads.request_json('{"a": NaN, "b": 1}')["b"] == 1
    assert reads.request_json(b'{"task": {"prompt": "p"}}') == {"task": {"prompt": "p"}}
