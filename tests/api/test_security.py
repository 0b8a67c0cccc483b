"""Security of the API: keys, scopes, tenants, rate limits, hostile input, audit trail, metrics."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from nofx.api.app import create_app
from nofx.security import ApiKeyService, Scope
from nofx.store import EventStore

AGENT = {"name": "coder", "capabilities": [{"name": "code.generate", "proficiency": 4}]}
SESSION = {"task": {"prompt": "write a parser", "capability": "code.generate"}}


@pytest.fixture
def world(store: EventStore) -> Iterator[dict]:
    """Tenant A with an agent and a session, tenant B, and keys of every scope."""
    service = ApiKeyService(store)
    keys = {
        "a_read": service.create("a", "r", {Scope.READ}).plaintext,
        "a_write": service.create("a", "w", {Scope.WRITE}).plaintext,
        "a_admin": service.create("a", "adm", {Scope.ADMIN}).plaintext,
        "b_admin": service.create("b", "badm", {Scope.ADMIN}).plaintext,
    }
    with TestClient(create_app(store=store, auth_required=True)) as client:
        auth = {name: {"Authorization": f"Bearer {key}"} for name, key in keys.items()}
        agent = client.post("/api/v1/agents", json=AGENT, headers=auth["a_write"]).json()
        session = client.post(
            "/api/v1/orchestration/sessions", json=SESSION, headers=auth["a_write"]
        ).json()
        flow = {"name": "one", "steps": [{"id": "only", "capability": "code.generate"}]}
        workflow = client.post(
            "/api/v1/orchestration/sessions",
            json={**SESSION, "pattern": "workflow", "workflow": flow},
            headers=auth["a_write"],
        ).json()
        spare = service.create("a", "spare", {Scope.READ}).key.key_id
        from nofx.alerts import DEFAULT_RULES, AlertService, Observation, evaluate

        slow = Observation("api_p95_ms", "host-1", 500.0, samples=10)
        (alert,) = (
            AlertService(store).sync(evaluate(DEFAULT_RULES, [slow]), set(), tenant_id="a").raised
        )
        yield {
            "alert": alert.alert_id,
            "workflow": workflow["session_id"],
            "client": client,
            "auth": auth,
            "agent": agent["agent_id"],
            "session": session["session_id"],
            "spare": spare,
        }


def endpoints(w: dict) -> list[tuple[str, str, dict | None, Scope, bool]]:
    """(method, path, body, scope needed, is it one tenant-owned item)."""
    a, s = w["agent"], w["session"]
    return [
        ("GET", "/api/v1/agents", None, Scope.READ, False),
        ("POST", "/api/v1/agents", {**AGENT, "name": "new"}, Scope.WRITE, False),
        ("GET", f"/api/v1/agents/{a}", None, Scope.READ, True),
        ("PUT", f"/api/v1/agents/{a}", AGENT, Scope.WRITE, True),
        ("GET", "/api/v1/orchestration/sessions", None, Scope.READ, False),
        ("POST", "/api/v1/orchestration/sessions", SESSION, Scope.WRITE, False),
        ("GET", f"/api/v1/orchestration/sessions/{s}", None, Scope.READ, True),
        ("GET", f"/api/v1/orchestration/sessions/{s}/events", None, Scope.READ, True),
        (
            "GET",
            "/api/v1/orchestration/agents/select?capability=code.generate",
            None,
            Scope.READ,
            True,
        ),
        ("POST", f"/api/v1/orchestration/sessions/{s}/cancel", None, Scope.WRITE, True),
        (
            "POST",
            "/api/v1/orchestration/communicate",
            {"sender": "a", "topic": "t", "body": {}},
            Scope.WRITE,
            False,
        ),
        ("GET", "/api/v1/orchestration/communicate/topic:t", None, Scope.READ, False),
        ("PUT", f"/api/v1/orchestration/pools/{a}", {"max_replicas": 4}, Scope.WRITE, True),
        ("GET", "/api/v1/orchestration/pools", None, Scope.READ, False),
        ("GET", f"/api/v1/orchestration/pools/{a}", None, Scope.READ, True),
        ("GET", f"/api/v1/orchestration/pools/{a}/decisions", None, Scope.READ, True),
        (
            "POST",
            "/api/v1/workflows/adapt",
            {
                "session_id": w["workflow"],
                "changes": [{"op": "set_pool_limit", "pool": "default", "limit": 2}],
            },
            Scope.WRITE,
            True,
        ),
        ("POST", "/api/v1/workflows/learn", None, Scope.WRITE, False),
        ("POST", "/api/v1/workflows/plan", {"goal": "write some code"}, Scope.READ, False),
        (
            "POST",
            "/api/v1/workflows/suggest",
            {"name": "one", "steps": [{"id": "only", "capability": "code.generate"}]},
            Scope.READ,
            False,
        ),
        (
            "POST",
            "/api/v1/workflows/suggestions/feedback",
            {"suggestion_id": "cache_step/b", "kind": "cache_step", "accepted": True},
            Scope.WRITE,
            False,
        ),
        ("GET", "/api/v1/analytics/predictions", None, Scope.READ, False),
        ("GET", "/api/v1/analytics/insights", None, Scope.READ, False),
        ("GET", "/api/v1/analytics/recommendations", None, Scope.READ, False),
        ("GET", "/api/v1/analytics/forecasts/durations", None, Scope.READ, False),
        ("GET", "/api/v1/analytics/forecasts/usage", None, Scope.READ, False),
        ("GET", "/api/v1/alerts", None, Scope.READ, False),
        ("GET", f"/api/v1/alerts/{w['alert']}", None, Scope.READ, True),
        ("POST", f"/api/v1/alerts/{w['alert']}/resolve", {"note": "ok"}, Scope.WRITE, True),
        ("GET", "/api/v1/keys", None, Scope.ADMIN, False),
        ("POST", "/api/v1/keys", {"name": "k", "scopes": ["read"]}, Scope.ADMIN, False),
        ("DELETE", f"/api/v1/keys/{w['spare']}", None, Scope.ADMIN, True),
        ("DELETE", f"/api/v1/agents/{a}", None, Scope.WRITE, True),
    ]


def call(w: dict, method: str, path: str, body: dict | None, key: str | None):
    headers = w["auth"][key] if key else {}
    return w["client"].request(method, path, json=body, headers=headers)


def test_authorization_matrix(world: dict) -> None:
    for method, path, body, scope, owned in endpoints(world):
        anonymous = call(world, method, path, body, None)
        assert anonymous.status_code == 401, (method, path)
        assert anonymous.headers["www-authenticate"] == "Bearer"
        assert anonymous.headers["content-type"].startswith("application/problem+json")
        weaker = {Scope.READ: None, Scope.WRITE: "a_read", Scope.ADMIN: "a_write"}[scope]
        if weaker:
            denied = call(world, method, path, body, weaker)
            assert denied.status_code == 403, (method, path, denied.text)
            assert denied.json()["type"].endswith("/forbidden")
        if owned:
            other = call(world, method, path, body, "b_admin")
            assert other.status_code in (404, 422), (
                method,
                path,
                other.text,
            )  # 422: tenant b has no capability
        right = {Scope.READ: "a_read", Scope.WRITE: "a_write", Scope.ADMIN: "a_admin"}[scope]
        allowed = call(world, method, path, body, right)
        assert allowed.status_code < 300, (method, path, allowed.text)


def test_other_tenants_see_empty_lists(world: dict) -> None:
    for path in ("/api/v1/agents", "/api/v1/orchestration/sessions"):
        assert call(world, "GET", path, None, "b_admin").json()["items"] == []
    assert [k["name"] for k in call(world, "GET", "/api/v1/keys", None, "b_admin").json()] == [
        "badm"
    ]


def test_key_is_shown_once_and_revocation_is_immediate(world: dict) -> None:
    created = call(
        world, "POST", "/api/v1/keys", {"name": "ci", "scopes": ["read"]}, "a_admin"
    ).json()
    secret = created["key"]
    assert secret.startswith("nofx_")
    listed = call(world, "GET", "/api/v1/keys", None, "a_admin").json()
    assert all("key" not in k and secret not in str(k) for k in listed)
    client = world["client"]
    assert (
        client.get("/api/v1/agents", headers={"Authorization": f"Bearer {secret}"}).status_code
        == 200
    )
    assert (
        call(world, "DELETE", f"/api/v1/keys/{created['key_id']}", None, "a_admin").status_code
        == 204
    )
    assert (
        client.get("/api/v1/agents", headers={"Authorization": f"Bearer {secret}"}).status_code
        == 401
    )
    for bad in ("Bearer nofx_x", "Bearer " + secret[:-2] + "zz", "Basic abc", "Bearer "):
        assert client.get("/api/v1/agents", headers={"Authorization": bad}).status_code == 401


def test_secrets_are_stored_hashed(world: dict, store: EventStore) -> None:
    from sqlalchemy import select

    from nofx.store.schema import api_keys

    secrets = {v["Authorization"].split("_")[-1] for v in world["auth"].values()}
    with store.engine.connect() as conn:
        stored = " ".join(str(tuple(r)) for r in conn.execute(select(api_keys)))
    assert not any(secret in stored for secret in secrets)
    events = " ".join(str(e.payload) for e in store.read_all(limit=100_000))
    assert not any(secret in events for secret in secrets)


def test_rate_limit_answers_429_with_retry_after(store: EventStore) -> None:
    key = ApiKeyService(store).create("a", "slow", {Scope.READ}, rate_per_s=1, burst=3).plaintext
    with TestClient(create_app(store=store, auth_required=True)) as client:
        codes = [
            client.get("/api/v1/agents", headers={"Authorization": f"Bearer {key}"})
            for _ in range(8)
        ]
    assert [r.status_code for r in codes[:3]] == [200, 200, 200]
    refused = [r for r in codes if r.status_code == 429]
    assert len(refused) >= 4
    assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
    assert refused[0].json()["type"].endswith("/rate-limited")


@pytest.mark.parametrize(
    "name",
    [
        "x'; DROP TABLE agents; --",
        'a" OR "1"="1',
        "robert'); DELETE FROM events; --",
    ],
)
def test_sql_injection_attempts_fail_cleanly_and_write_nothing(
    world: dict, store: EventStore, name: str
) -> None:
    before = [e for e in store.read_all(limit=100_000) if e.stream_type != "audit"]
    client, auth = world["client"], world["auth"]
    response = client.post("/api/v1/agents", json={**AGENT, "name": name}, headers=auth["a_write"])
    assert response.status_code == 422  # the name pattern refuses it before any SQL runs
    for path in (f"/api/v1/agents/{name}", f"/api/v1/orchestration/sessions/{name}"):
        assert client.get(path, headers=auth["a_read"]).status_code == 404
    listed = client.get("/api/v1/agents", params={"capability": name}, headers=auth["a_read"])
    assert listed.status_code == 200 and listed.json()["items"] == []
    after = [e for e in store.read_all(limit=100_000) if e.stream_type != "audit"]
    assert len(after) == len(before)
    assert client.get(f"/api/v1/agents/{world['agent']}", headers=auth["a_read"]).status_code == 200


def test_oversized_inputs_are_refused(world: dict) -> None:
    client, auth = world["client"], world["auth"]
    huge_prompt = {"task": {"prompt": "x" * 200_000, "capability": "code.generate"}}
    assert (
        client.post(
            "/api/v1/orchestration/sessions", json=huge_prompt, headers=auth["a_write"]
        ).status_code
        == 422
    )
    blob = {**AGENT, "name": "blob", "labels": {"x": "y" * 2_000_000}}
    assert client.post("/api/v1/agents", json=blob, headers=auth["a_write"]).status_code == 413
    assert (
        client.get("/api/v1/agents", params={"limit": 10_000}, headers=auth["a_read"]).status_code
        == 422
    )


def test_writes_leave_an_audit_trail(world: dict, store: EventStore) -> None:
    audit = [e for e in store.read_all(limit=100_000) if e.stream_type == "audit"]
    routes = {(e.payload["method"], e.payload["route"], e.payload["status"]) for e in audit}
    assert ("POST", "/api/v1/agents", 201) in routes
    assert ("POST", "/api/v1/orchestration/sessions", 202) in routes
    assert all(e.payload["key_id"] for e in audit)


def test_metrics_are_exposed_for_prometheus(world: dict, store: EventStore) -> None:
    """Only to a key with the operator's metrics scope: the counts cover every tenant."""
    client = world["client"]
    client.get("/api/v1/health")
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=world["auth"]["a_admin"]).status_code == 403
    operator = ApiKeyService(store).create("ops", "prometheus", {Scope.METRICS}).plaintext
    text = client.get("/metrics", headers={"Authorization": f"Bearer {operator}"}).text
    assert 'nofx_http_requests_total{method="GET",route="/api/v1/health",status="200"}' in text
    assert 'nofx_sessions{status="requested"} 2.0' in text  # a solo and a workflow session
    assert "nofx_http_request_duration_seconds_bucket" in text
