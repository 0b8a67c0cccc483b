"""Issue 10, findings 3-10: each abuse that used to work, tried again with real keys of
tenants alpha and beta, and refused the documented way (problem+json, never a 500)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert

from nofx.api import pagination
from nofx.api.app import create_app
from nofx.api.limits import ApiLimits
from nofx.domain import utcnow
from nofx.security import ApiKeyService, Scope
from nofx.store import EventStore
from nofx.store.schema import agent_communications

AGENT = {"name": "coder", "capabilities": [{"name": "code.generate", "proficiency": 4}]}
SESSION = {"task": {"prompt": "write a parser", "capability": "code.generate"}}


class World:
    def __init__(self, client: TestClient, keys: dict[str, str]) -> None:
        self.client = client
        self.keys = keys

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def call(self, who: str, method: str, path: str, **kwargs: Any) -> Any:
        return self.client.request(method, "/api/v1" + path, headers=self.auth(who), **kwargs)


def make_world(store: EventStore, limits: ApiLimits | None = None) -> Iterator[World]:
    service = ApiKeyService(store)
    keys = {
        f"{tenant}_{scope.value}": service.create(
            tenant, f"{tenant}-{scope.value}", {scope}, rate_per_s=1000, burst=1000
        ).plaintext
        for tenant in ("alpha", "beta")
        for scope in (Scope.READ, Scope.WRITE, Scope.ADMIN)
    }
    app = create_app(store=store, auth_required=True, limits=limits)
    with TestClient(app) as client:
        yield World(client, keys)


@pytest.fixture
def world(store: EventStore) -> Iterator[World]:
    yield from make_world(store)


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["detail"]
    return body


# finding 6: cursors


def forged(position: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode()


LISTS = [
    "/agents",
    "/orchestration/sessions",
    "/alerts",
    "/analytics/predictions",
    "/analytics/insights",
    "/analytics/recommendations",
    "/analytics/forecasts/durations",
    "/analytics/forecasts/usage",
]


@pytest.mark.parametrize("path", LISTS)
def test_malformed_tampered_or_huge_cursors_are_422_on_every_list(world: World, path: str) -> None:
    bad = [
        forged({"after": "x"}),  # the old, unsigned shape
        forged({"offset": 2**70, "rows": 1}),
        "not base64 at all!",
        pagination.encode({"wrong": "keys"}),  # signed, but another list's position
        pagination.encode({"offset": 2**70, "rows": 1}),
        pagination.encode({"t": "not a time", "id": "x"}),
        pagination.encode({"after": 5}),
        pagination.encode({"offset": 1, "rows": 1})[:-3] + "abc",  # signature changed
    ]
    for cursor in bad:
        response = world.call("alpha_read", "GET", path, params={"cursor": cursor})
        body = assert_problem(response, 422)
        assert "cursor" in body["detail"]


def test_issued_cursors_still_page_through(world: World) -> None:
    for i in range(3):
        world.call("alpha_write", "POST", "/agents", json={**AGENT, "name": f"a{i}"})
    first = world.call("alpha_read", "GET", "/agents", params={"limit": 2}).json()
    second = world.call(
        "alpha_read", "GET", "/agents", params={"limit": 2, "cursor": first["next_cursor"]}
    ).json()
    names = [a["name"] for a in first["items"] + second["items"]]
    assert sorted(names) == ["a0", "a1", "a2"] and second["next_cursor"] is None


# finding 7: deep bodies, poisoned channel


def nested(depth: int) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for _ in range(depth - 1):
        body = {"a": body}
    return body


def test_a_body_nested_300_levels_is_refused_before_storage(
    world: World, store: EventStore
) -> None:
    message = {"sender": "a", "topic": "deep", "body": nested(300)}
    body = assert_problem(
        world.call("alpha_write", "POST", "/orchestration/communicate", json=message), 422
    )
    assert "nested deeper than 32" in body["detail"]
    assert world.call("alpha_read", "GET", "/orchestration/communicate/topic:deep").json() == []
    assert not [e for e in store.read_all(limit=10_000) if e.type == "MessagePublished"]
    shallow = {"sender": "a", "topic": "deep", "body": nested(20)}
    assert (
        world.call("alpha_write", "POST", "/orchestration/communicate", json=shallow).status_code
        == 201
    )


def test_a_poisoned_channel_stays_readable(world: World, store: EventStore) -> None:
    """A deep body already in the table (stored before the limit) reads as a note, not a 500."""
    with store.engine.begin() as conn:
        conn.execute(
            insert(agent_communications).values(
                message_id="msg_poison",
                tenant_id="alpha",
                channel="topic:poisoned",
                channel_seq=1,
                session_id=None,
                sender="old",
                body=nested(300),
                body_ref=None,
                created_at=utcnow(),
            )
        )
    world.call(
        "alpha_write",
        "POST",
        "/orchestration/communicate",
        json={"sender": "b", "topic": "poisoned", "body": {"ok": True}},
    )
    read = world.call("alpha_read", "GET", "/orchestration/communicate/topic:poisoned")
    assert read.status_code == 200
    poisoned, fine = read.json()
    assert "withheld" in poisoned["body"]["unreadable"] and fine["body"] == {"ok": True}


# finding 8: message ids per tenant


def test_another_tenants_message_id_is_not_a_conflict(world: World) -> None:
    mine = {"message_id": "msg-shared", "sender": "a", "topic": "t", "body": {"who": "alpha"}}
    theirs = {**mine, "body": {"who": "beta"}}
    assert (
        world.call("alpha_write", "POST", "/orchestration/communicate", json=mine).status_code
        == 201
    )
    answer = world.call("beta_write", "POST", "/orchestration/communicate", json=theirs)
    assert answer.status_code == 201 and answer.json()["body"] == {"who": "beta"}
    again = world.call("alpha_write", "POST", "/orchestration/communicate", json=theirs)
    assert again.json()["body"] == {"who": "alpha"}  # alpha's own id stays deduplicated
    for tenant in ("alpha", "beta"):
        read = world.call(f"{tenant}_read", "GET", "/orchestration/communicate/topic:t").json()
        assert [m["body"]["who"] for m in read] == [tenant]


# finding 9: pools after agent deletion


def test_pools_survive_deleting_their_agent(world: World) -> None:
    kept = world.call("alpha_write", "POST", "/agents", json=AGENT).json()["agent_id"]
    gone = world.call("alpha_write", "POST", "/agents", json={**AGENT, "name": "gone"}).json()
    for agent_id in (kept, gone["agent_id"]):
        put = world.call("alpha_write", "PUT", f"/orchestration/pools/{agent_id}", json={})
        assert put.status_code == 200
    assert world.call("alpha_write", "DELETE", f"/agents/{gone['agent_id']}").status_code == 204
    pools = world.call("alpha_read", "GET", "/orchestration/pools")
    assert pools.status_code == 200
    by_agent = {p["agent_id"]: p for p in pools.json()}
    assert by_agent[kept]["agent_status"] == "active" and by_agent[kept]["capacity"] > 0
    assert by_agent[gone["agent_id"]]["agent_status"] == "deregistered"
    assert by_agent[gone["agent_id"]]["capacity"] == 0
    assert world.call("beta_read", "GET", "/orchestration/pools").json() == []


# finding 10: numbers, 405, metrics


@pytest.mark.parametrize("number", ["Infinity", "-Infinity", "NaN", "1e999"])
def test_non_finite_numbers_are_refused(world: World, number: str) -> None:
    world.call("alpha_write", "POST", "/agents", json=AGENT)
    raw = json.dumps({**SESSION, "budget_usd": 1.0}).replace("1.0", number)
    response = world.client.post(
        "/api/v1/orchestration/sessions",
        content=raw,
        headers={**world.auth("alpha_write"), "content-type": "application/json"},
    )
    assert "finite" in assert_problem(response, 422)["detail"]
    query = world.call(
        "alpha_read",
        "GET",
        "/orchestration/agents/select",
        params={"capability": "code.generate", "budget_usd": "inf"},
    )
    assert_problem(query, 422)


def test_405_says_which_methods_are_allowed(world: World) -> None:
    response = world.call("alpha_admin", "PATCH", "/agents")
    assert_problem(response, 405)
    assert response.headers["allow"] == "GET, HEAD, POST"
    one = world.call("alpha_admin", "POST", "/agents/agt_1")
    assert one.headers["allow"] == "DELETE, GET, HEAD, PUT"


def test_tenant_admins_cannot_mint_the_metrics_scope(world: World) -> None:
    response = world.call("alpha_admin", "POST", "/keys", json={"name": "m", "scopes": ["metrics"]})
    assert "metrics" in assert_problem(response, 403)["detail"]


# finding 5: capabilities, agents


def test_an_agent_with_10000_capabilities_is_refused_quickly(world: World) -> None:
    caps = [{"name": f"skill.n{i}"} for i in range(10_000)]
    started = time.perf_counter()
    response = world.call(
        "alpha_write", "POST", "/agents", json={"name": "big", "capabilities": caps}
    )
    assert time.perf_counter() - started < 2.0
    body = assert_problem(response, 422)
    assert body["errors"][0]["field"].endswith("capabilities")
    fits = [{"name": f"skill.n{i}"} for i in range(256)]
    ok = world.call("alpha_write", "POST", "/agents", json={"name": "wide", "capabilities": fits})
    assert ok.status_code == 201


# finding 3: workflow size


def chain(steps: int) -> dict[str, Any]:
    return {
        "name": "chain",
        "steps": [
            {"id": f"s{i}", "capability": "code.generate", "needs": [f"s{i - 1}"] if i else []}
            for i in range(steps)
        ],
    }


def dense(steps: int, fan_in: int) -> dict[str, Any]:
    return {
        "name": "dense",
        "steps": [
            {
                "id": f"s{i}",
                "capability": "code.generate",
                "needs": [f"s{j}" for j in range(max(0, i - fan_in), i)],
            }
            for i in range(steps)
        ],
    }


@pytest.mark.parametrize("path", ["/workflows/suggest", "/workflows/analyze"])
def test_workflows_over_the_size_limits_are_422(world: World, path: str) -> None:
    params = {"check_capabilities": "false"}
    too_long = world.call("alpha_read", "POST", path, json=chain(501), params=params)
    assert "501 steps; at most 500" in assert_problem(too_long, 422)["detail"]
    too_dense = world.call("alpha_read", "POST", path, json=dense(300, 20), params=params)
    assert "dependencies" in assert_problem(too_dense, 422)["detail"]
    fine = world.call("alpha_read", "POST", path, json=chain(50), params=params)
    assert fine.status_code == 200, fine.text


def test_adaptations_cannot_add_more_dependencies_than_a_workflow_may_have(
    world: World,
) -> None:
    step = {"id": "x", "capability": "code.generate", "needs": [f"s{i}" for i in range(5001)]}
    body = {"session_id": "ses_1", "changes": [{"op": "add_step", "step": step}]}
    response = world.call("alpha_write", "POST", "/workflows/adapt", json=body)
    assert "5001 dependencies" in assert_problem(response, 422)["detail"]


def test_a_session_workflow_over_the_limits_is_422(world: World) -> None:
    world.call("alpha_write", "POST", "/agents", json=AGENT)
    body = {**SESSION, "pattern": "workflow", "workflow": chain(600)}
    response = world.call("alpha_write", "POST", "/orchestration/sessions", json=body)
    assert "600 steps" in assert_problem(response, 422)["detail"]


def wait_until_ready(pool: Any) -> None:
    """The worker starts with the app (and again after a kill); a busy machine makes it slow."""
    deadline = time.monotonic() + 60
    while not pool.ready and time.monotonic() < deadline:
        time.sleep(0.05)


def test_analysis_past_its_budget_is_503_and_stopped(store: EventStore) -> None:
    limits = ApiLimits(analysis_budget_s=0.3)
    for w in make_world(store, limits):
        pool = w.client.app.state.analysis_pool  # type: ignore[attr-defined]
        wait_until_ready(pool)
        started = time.perf_counter()
        response = w.call(
            "alpha_read",
            "POST",
            "/workflows/suggest",
            json=dense(150, 30),
            params={"check_capabilities": "false"},
        )
        elapsed = time.perf_counter() - started
        body = assert_problem(response, 503)
        assert "budget" in body["detail"] and response.headers["retry-after"]
        assert elapsed < 2.0
        assert pool.killed == 1
        wait_until_ready(pool)  # the replacement starts at once
        small = w.call(
            "alpha_read",
            "POST",
            "/workflows/suggest",
            json=chain(5),
            params={"check_capabilities": "false"},
        )
        assert small.status_code == 200  # a fresh worker took over


# finding 10: ceilings


def test_tenant_ceilings_on_agents_sessions_and_keys(store: EventStore) -> None:
    limits = ApiLimits(
        max_agents_per_tenant=2,
        max_sessions_in_flight=2,
        max_keys_per_tenant=8,
        key_mints_per_minute=3,
    )
    for w in make_world(store, limits):
        for i in range(2):
            assert (
                w.call(
                    "alpha_write", "POST", "/agents", json={**AGENT, "name": f"a{i}"}
                ).status_code
                == 201
            )
        third = w.call("alpha_write", "POST", "/agents", json={**AGENT, "name": "a2"})
        assert "NOFX_API_MAX_AGENTS_PER_TENANT" in assert_problem(third, 409)["detail"]
        assert w.call("beta_write", "POST", "/agents", json=AGENT).status_code == 201  # per tenant
        for _ in range(2):
            assert (
                w.call("alpha_write", "POST", "/orchestration/sessions", json=SESSION).status_code
                == 202
            )
        busy = w.call("alpha_write", "POST", "/orchestration/sessions", json=SESSION)
        assert_problem(busy, 429)
        assert int(busy.headers["retry-after"]) >= 1
        minted = [
            w.call(
                "alpha_admin", "POST", "/keys", json={"name": f"k{i}", "scopes": ["read"]}
            ).status_code
            for i in range(4)
        ]
        assert minted[:2] == [201, 201]  # 3 keys existed, the ceiling is 8 ... and 3 a minute
        assert 429 in minted or 409 in minted
        assert (
            w.call(
                "beta_admin", "POST", "/keys", json={"name": "b", "scopes": ["read"]}
            ).status_code
            == 201
        )


def test_keys_of_one_tenant_share_its_rate_ceiling(store: EventStore) -> None:
    for w in make_world(store, ApiLimits(tenant_rate_per_s=1, tenant_burst=4)):
        codes = [
            w.call(f"alpha_{scope}", "GET", "/agents").status_code
            for scope in ("read", "write", "admin", "read", "write", "admin")
        ]
        assert codes.count(200) <= 5 and 429 in codes
        assert w.call("beta_read", "GET", "/agents").status_code == 200
        refused = w.call("alpha_read", "GET", "/agents")
        assert "tenant" in assert_problem(refused, 429)["detail"]


def test_failed_authentication_is_throttled_per_client(store: EventStore) -> None:
    for w in make_world(store, ApiLimits(auth_failures_burst=5, auth_failures_per_minute=6)):
        wrong = {"Authorization": "Bearer nofx_0123456789abcdef_guess"}
        codes = [w.client.get("/api/v1/agents", headers=wrong).status_code for _ in range(7)]
        assert codes[:5] == [401] * 5 and codes[5:] == [429, 429]
        blocked = w.client.get("/api/v1/agents", headers=w.auth("alpha_read"))
        body = assert_problem(blocked, 429)  # even a right key waits: guesses cannot continue
        assert "failed authentications" in body["detail"]
        # the next failure is allowed once one token is back: 60 / 6 per minute = 10 s from
        # the last refill, so whole seconds 9 or 10 depending on when the clock ticked
        assert int(blocked.headers["retry-after"]) in (9, 10)
        anonymous = w.client.get("/api/v1/agents")
        assert anonymous.status_code == 429


def test_the_failure_guard_forgives_over_time() -> None:
    from nofx.security import FailureGuard

    guard = FailureGuard(burst=2, per_minute=60, max_tracked=2)
    guard.failed("a", 0.0)
    guard.failed("a", 0.0)
    assert guard.blocked_for("a", 0.0) == 1
    assert guard.blocked_for("a", 1.0) == 0
    assert guard.blocked_for("never-failed", 0.0) == 0
    guard.failed("b", 100.0)
    guard.failed("c", 100.0)  # over max_tracked: "a" (refilled) is forgotten
    assert "a" not in guard._buckets and len(guard._buckets) <= 2


def test_limits_come_from_the_environment() -> None:
    limits = ApiLimits.from_env(
        {"NOFX_API_MAX_WORKFLOW_STEPS": "42", "NOFX_API_ANALYSIS_BUDGET_S": "0.5"}
    )
    assert limits.max_workflow_steps == 42 and limits.analysis_budget_s == 0.5
    assert ApiLimits.from_env({}) == ApiLimits()
    with pytest.raises(ValueError, match="NOFX_API_MAX_BODY_BYTES"):
        ApiLimits.from_env({"NOFX_API_MAX_BODY_BYTES": "lots"})
    with pytest.raises(ValueError, match="positive"):
        ApiLimits.from_env({"NOFX_API_TENANT_RATE_PER_S": "inf"})
