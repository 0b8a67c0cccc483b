"""The HTTP API against a real SQLite store: happy paths, clear errors, nothing half-written."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nofx.api.app import create_app
from nofx.runtime import Runtime, RuntimeConfig
from nofx.store import EventStore

AGENT = {"name": "coder", "capabilities": [{"name": "code.generate", "proficiency": 4}]}
SESSION = {"task": {"prompt": "write a parser", "capability": "code.generate"}}


@pytest.fixture
def client(store: EventStore) -> Iterator[TestClient]:
    """Functional tests with keys switched off (tenant from X-Tenant-ID); test_security covers keys."""
    with TestClient(create_app(store=store, auth_required=False)) as c:
        yield c


def domain_events(store: EventStore) -> int:
    """Events other than the audit trail (which records refused writes too, as it should)."""
    return sum(1 for e in store.read_all(limit=1_000_000) if e.stream_type != "audit")


def is_problem(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"].endswith("/" + code) and body["status"] == status and body["detail"]
    return body


def test_health_reports_the_store(client: TestClient) -> None:
    body = client.get("/api/v1/health").json()
    assert body["status"] == "ok" and body["store"] == "sqlite"


def test_agent_crud_with_versions(client: TestClient) -> None:
    created = client.post("/api/v1/agents", json=AGENT)
    assert created.status_code == 201
    agent = created.json()
    assert created.headers["location"] == f"/api/v1/agents/{agent['agent_id']}"
    assert client.get(created.headers["location"]).json()["name"] == "coder"
    changed = {**AGENT, "capabilities": [{"name": "code.review", "proficiency": 2}]}
    updated = client.put(
        f"/api/v1/agents/{agent['agent_id']}", json=changed, headers={"If-Match": "1"}
    )
    assert updated.status_code == 200 and updated.json()["version"] == 2
    stale = client.put(
        f"/api/v1/agents/{agent['agent_id']}", json=changed, headers={"If-Match": "1"}
    )
    is_problem(stale, 412, "concurrency-conflict")
    bad_etag = client.put(
        f"/api/v1/agents/{agent['agent_id']}", json=changed, headers={"If-Match": "x"}
    )
    is_problem(bad_etag, 412, "concurrency-conflict")
    assert (
        client.get("/api/v1/agents", params={"capability": "code.review"}).json()["items"][0][
            "version"
        ]
        == 2
    )
    assert client.delete(f"/api/v1/agents/{agent['agent_id']}").status_code == 204
    is_problem(client.get(f"/api/v1/agents/{agent['agent_id']}"), 404, "not-found")
    is_problem(client.delete(f"/api/v1/agents/{agent['agent_id']}"), 404, "not-found")


def test_duplicate_registration_is_409_and_writes_nothing(
    client: TestClient, store: EventStore
) -> None:
    client.post("/api/v1/agents", json=AGENT)
    before = domain_events(store)
    body = is_problem(client.post("/api/v1/agents", json=AGENT), 409, "duplicate-agent")
    assert "already registered" in body["detail"]
    assert domain_events(store) == before


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"name": "x", "capabilities": "all"}, "body.capabilities"),
        (
            {"name": "x", "capabilities": [{"name": "a.b", "proficiency": "high"}]},
            "body.capabilities.0.proficiency",
        ),
        (
            {"name": "x", "capabilities": [{"name": "a.b"}], "max_concurrency": -1},
            "body.max_concurrency",
        ),
        ({"capabilities": [{"name": "a.b"}]}, "body.name"),
        ({"name": "x", "capabilities": [{"name": "a.b"}], "unknown": 1}, "body.unknown"),
    ],
)
def test_wrong_types_are_422_naming_the_field(
    client: TestClient, store: EventStore, payload, field
) -> None:
    body = is_problem(client.post("/api/v1/agents", json=payload), 422, "validation-error")
    assert field in [e["field"] for e in body["errors"]]
    assert domain_events(store) == 0


def test_malformed_json_is_a_problem_not_a_crash(client: TestClient) -> None:
    response = client.post(
        "/api/v1/agents", content=b"{not json", headers={"content-type": "application/json"}
    )
    is_problem(response, 422, "validation-error")


def test_session_lifecycle_and_events(client: TestClient, store: EventStore) -> None:
    client.post("/api/v1/agents", json=AGENT)
    created = client.post("/api/v1/orchestration/sessions", json=SESSION)
    assert created.status_code == 202
    session = created.json()
    assert session["status"] == "requested"
    asyncio.run(Runtime(store, config=RuntimeConfig(time_scale=0.0)).run_pending())
    done = client.get(created.headers["location"]).json()
    assert done["status"] in ("succeeded", "failed")
    events = client.get(f"/api/v1/orchestration/sessions/{session['session_id']}/events").json()
    assert events[0]["type"] == "SessionRequested" and events[-1]["type"] in (
        "SessionCompleted",
        "SessionFailed",
    )
    later = client.get(
        f"/api/v1/orchestration/sessions/{session['session_id']}/events", params={"after_seq": 2}
    )
    assert [e["seq"] for e in later.json()] == list(range(3, len(events) + 1))
    is_problem(
        client.post(f"/api/v1/orchestration/sessions/{session['session_id']}/cancel"),
        409,
        "conflict",
    )


def test_event_stream_as_server_sent_events(client: TestClient, store: EventStore) -> None:
    client.post("/api/v1/agents", json=AGENT)
    session = client.post("/api/v1/orchestration/sessions", json=SESSION).json()
    asyncio.run(Runtime(store, config=RuntimeConfig(time_scale=0.0)).run_pending())
    with client.stream(
        "GET",
        f"/api/v1/orchestration/sessions/{session['session_id']}/events",
        headers={"accept": "text/event-stream"},
    ) as response:
        text = "".join(response.iter_text())
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "event: SessionRequested" in text and (
        "event: SessionCompleted" in text or "event: SessionFailed" in text
    )


def test_unknown_capability_suggests_and_writes_nothing(
    client: TestClient, store: EventStore
) -> None:
    client.post("/api/v1/agents", json=AGENT)
    before = domain_events(store)
    bad = {"task": {"prompt": "x", "capability": "code.generat"}}
    body = is_problem(
        client.post("/api/v1/orchestration/sessions", json=bad), 422, "unknown-capability"
    )
    assert "did you mean code.generate" in body["detail"]
    assert domain_events(store) == before


def test_cancel_a_requested_session(client: TestClient) -> None:
    client.post("/api/v1/agents", json=AGENT)
    session = client.post("/api/v1/orchestration/sessions", json=SESSION).json()
    cancelled = client.post(f"/api/v1/orchestration/sessions/{session['session_id']}/cancel")
    assert cancelled.json()["status"] == "cancelled"


def test_tenants_do_not_see_each_other(client: TestClient) -> None:
    a = client.post("/api/v1/agents", json=AGENT, headers={"X-Tenant-ID": "acme"}).json()
    assert a["tenant_id"] == "acme"
    assert client.get("/api/v1/agents", headers={"X-Tenant-ID": "globex"}).json()["items"] == []
    is_problem(
        client.get(f"/api/v1/agents/{a['agent_id']}", headers={"X-Tenant-ID": "globex"}),
        404,
        "not-found",
    )
    # the body cannot smuggle another tenant in
    b = client.post(
        "/api/v1/agents",
        json={**AGENT, "name": "b", "tenant_id": "acme"},
        headers={"X-Tenant-ID": "globex"},
    )
    assert b.json()["tenant_id"] == "globex"
    session = client.post(
        "/api/v1/orchestration/sessions", json=SESSION, headers={"X-Tenant-ID": "acme"}
    ).json()
    is_problem(
        client.get(
            f"/api/v1/orchestration/sessions/{session['session_id']}",
            headers={"X-Tenant-ID": "globex"},
        ),
        404,
        "not-found",
    )


def test_oversized_body_is_413(client: TestClient, store: EventStore) -> None:
    huge = {"name": "x", "capabilities": [{"name": "a.b"}], "labels": {"blob": "x" * 2_000_000}}
    is_problem(client.post("/api/v1/agents", json=huge), 413, "payload-too-large")
    assert domain_events(store) == 0


def test_bad_cursor_and_unknown_route(client: TestClient) -> None:
    is_problem(client.get("/api/v1/agents", params={"cursor": "%%%"}), 422, "validation-error")
    is_problem(
        client.get("/api/v1/orchestration/sessions", params={"cursor": "bm90IGpzb24"}),
        422,
        "validation-error",
    )
    is_problem(client.get("/api/v1/nothing-here"), 404, "not-found")


def test_select_dry_run_ranks_with_reasons(client: TestClient) -> None:
    client.post("/api/v1/agents", json=AGENT)
    client.post(
        "/api/v1/agents",
        json={
            **AGENT,
            "name": "novice",
            "capabilities": [{"name": "code.generate", "proficiency": 1}],
        },
    )
    body = client.get(
        "/api/v1/orchestration/agents/select", params={"capability": "code.generate"}
    ).json()
    assert body["candidates"][0]["name"] == "coder"
    assert all(c["reasons"] for c in body["candidates"])
    is_problem(
        client.get("/api/v1/orchestration/agents/select", params={"capability": "nope.x"}),
        422,
        "unknown-capability",
    )


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(n=st.integers(min_value=0, max_value=12), limit=st.integers(min_value=1, max_value=5))
def test_cursor_pagination_visits_every_item_once(tmp_path_factory, n: int, limit: int) -> None:
    store = EventStore(f"sqlite:///{tmp_path_factory.mktemp('api') / 'e.db'}")
    with TestClient(create_app(store=store, auth_required=False)) as c:
        c.post("/api/v1/agents", json=AGENT)
        for i in range(n):
            c.post("/api/v1/agents", json={**AGENT, "name": f"a{i}"})
            c.post("/api/v1/orchestration/sessions", json=SESSION)
        for path, total in (("/api/v1/agents", n + 1), ("/api/v1/orchestration/sessions", n)):
            seen, cursor = [], None
            while True:
                page = c.get(
                    path, params={"limit": limit, **({"cursor": cursor} if cursor else {})}
                ).json()
                seen += [item.get("agent_id") or item.get("session_id") for item in page["items"]]
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            assert len(seen) == total and len(set(seen)) == total
    store.dispose()


def test_a_real_uvicorn_server_answers(store: EventStore) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(store=store, auth_required=False),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        response = httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=5)
        assert response.status_code == 200 and response.json()["status"] == "ok"
        assert "paths" in httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=5).json()
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_communicate_send_read_replay(client: TestClient) -> None:
    for i in range(3):
        sent = client.post(
            "/api/v1/orchestration/communicate",
            json={"sender": "agt_a", "topic": "session-1", "body": {"i": i}, "message_id": f"m{i}"},
        )
        assert sent.status_code == 201 and sent.json()["seq"] == i + 1
    again = client.post(
        "/api/v1/orchestration/communicate",
        json={"sender": "agt_a", "topic": "session-1", "body": {}, "message_id": "m0"},
    )
    assert again.json()["seq"] == 1 and again.json()["body"] == {"i": 0}
    channel = client.get("/api/v1/orchestration/communicate/topic:session-1").json()
    assert [m["seq"] for m in channel] == [1, 2, 3]
    replay = client.get(
        "/api/v1/orchestration/communicate/topic:session-1", params={"after_seq": 1}
    ).json()
    assert [m["body"]["i"] for m in replay] == [1, 2]
    bad = client.post("/api/v1/orchestration/communicate", json={"sender": "a", "body": {}})
    is_problem(bad, 422, "validation-error")


def test_pools_are_configured_listed_and_explained(client: TestClient, store: EventStore) -> None:
    agent = client.post("/api/v1/agents", json={**AGENT, "max_concurrency": 3}).json()
    url = f"/api/v1/orchestration/pools/{agent['agent_id']}"
    assert client.get(url).status_code == 404
    bad = client.put(url, json={"min_replicas": 5, "max_replicas": 2})
    assert "above max_replicas" in is_problem(bad, 422, "validation-error")["detail"]
    assert client.get("/api/v1/orchestration/pools").json() == []

    pool = client.put(url, json={"min_replicas": 2, "max_replicas": 6}).json()
    assert (pool["replicas"], pool["capacity"]) == (2, 6)
    assert client.get("/api/v1/orchestration/pools").json()[0]["agent_id"] == agent["agent_id"]
    assert client.get(url).json()["policy"]["max_replicas"] == 6

    # a runtime's scaling decision shows in the pool and in its decision history
    from nofx.pools import PoolService
    from nofx.routing.autoscale import PoolSignal, ScalingDecision

    pools = PoolService(store)
    seen = pools.get(agent["agent_id"])
    pools.scale(seen, ScalingDecision(2, 4, "queue of 9", 1.5), PoolSignal(2, 3, 6, 3, 0.0), "w1")
    assert client.get(url).json()["replicas"] == 4
    history = client.get(url + "/decisions").json()
    assert [d["type"] for d in history] == ["PoolConfigured", "PoolScaled"]
    assert history[-1]["payload"]["reason"] == "queue of 9"
    assert client.get("/api/v1/orchestration/pools/agt_missing/decisions").status_code == 404


def test_api_latency_windows_and_write_durations_land_in_the_store(store: EventStore) -> None:
    with TestClient(create_app(store=store, auth_required=False)) as client:
        client.app.state.latency_window.window_s = 0.0  # close a window on every request
        client.get("/api/v1/health")
        client.post("/api/v1/agents", json=AGENT)
        for _ in range(3):
            client.get("/api/v1/agents")
    windows = [e.payload for e in store.read_all(limit=1000, stream_type="api_metrics")]
    assert sum(w["requests"] for w in windows) == 5  # nothing lost, the last one at shutdown
    assert all(w["p50_ms"] <= w["p95_ms"] <= w["p99_ms"] for w in windows)
    audit = [e.payload for e in store.read_all(limit=1000, stream_type="audit")]
    assert audit[0]["duration_ms"] > 0


def test_the_openapi_spec_documents_every_operation(client: TestClient) -> None:
    """Every operation has a summary and a tag, and every request body an example."""
    spec = client.get("/openapi.json").json()
    operations = [
        (method, path, op)
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
        if path.startswith("/api/v1")
    ]
    assert len(operations) >= 28
    for method, path, op in operations:
        assert op.get("summary") and op.get("tags"), (method, path)
        body = op.get("requestBody")
        if body:
            content = body["content"]["application/json"]
            assert content.get("examples") or content.get("example"), (method, path)


def test_every_response_has_a_recorded_example_that_fits_its_schema(client: TestClient) -> None:
    """Response examples come from real calls (python -m nofx.api.examples); when a model
    changes or an operation is added without re-recording, this says which one."""
    from jsonschema import Draft202012Validator

    from nofx.api.examples import load_examples

    spec = client.get("/openapi.json").json()
    recorded = load_examples()
    missing, invalid = [], []
    for path, ops in spec["paths"].items():
        if not path.startswith("/api/v1"):
            continue
        for method, op in ops.items():
            for code, response in op["responses"].items():
                content = response.get("content", {}).get("application/json")
                if not code.startswith("2") or content is None:
                    continue
                example = content.get("examples", {}).get("recorded")
                if example is None:
                    missing.append(f"{method.upper()} {path}")
                    continue
                schema = {**content["schema"], "components": spec["components"]}
                errors = list(Draft202012Validator(schema).iter_errors(example["value"]))
                if errors:
                    invalid.append(f"{method.upper()} {path}: {errors[0].message}")
    assert not missing, f"no recorded example (run python -m nofx.api.examples): {missing}"
    assert not invalid, invalid
    known = {f"{m.upper()} {p}" for p, ops in spec["paths"].items() for m in ops}
    assert set(recorded) <= known, f"stale examples: {set(recorded) - known}"
