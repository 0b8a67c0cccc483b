"""API usage is counted per tenant, key, route template and hour, and written as events."""

from __future__ import annotations

from fastapi.testclient import TestClient

from nofx.api.usage import UsageCounter, flush
from nofx.security import ApiKeyService, Scope
from nofx.store import EventStore


def test_requests_are_counted_by_key_route_template_and_hour(store: EventStore) -> None:
    from nofx.api.app import create_app

    keys = ApiKeyService(store)
    a = keys.create("acme", "a", {Scope.READ})
    b = keys.create("bolt", "b", {Scope.READ})
    app = create_app(store=store, auth_required=True)
    with TestClient(app) as client:
        for _ in range(3):
            client.get("/api/v1/alerts", headers={"Authorization": f"Bearer {a.plaintext}"})
        client.get("/api/v1/alerts/alr_nope", headers={"Authorization": f"Bearer {a.plaintext}"})
        client.get("/api/v1/agents", headers={"Authorization": f"Bearer {b.plaintext}"})
        client.get("/api/v1/agents")  # no key: nobody to attribute it to
        flush(app)
    acme = [e.payload for e in store.read_stream("api-usage-acme")]
    bolt = [e.payload for e in store.read_stream("api-usage-bolt")]
    by_route = {(p["method"], p["route"]): p for p in acme}
    assert by_route[("GET", "/api/v1/alerts")]["requests"] == 3
    one = by_route[("GET", "/api/v1/alerts/{alert_id}")]  # the template, not the id
    assert (one["requests"], one["client_errors"]) == (1, 1)
    assert {p["key_id"] for p in acme} == {a.key.key_id}
    assert [(p["route"], p["key_id"]) for p in bolt] == [("/api/v1/agents", b.key.key_id)]
    assert all(p["hour"].endswith(":00:00+00:00") for p in acme + bolt)


def test_counts_are_due_after_the_flush_interval() -> None:
    counter = UsageCounter(flush_s=3600)
    assert counter.add("t", "k", "GET", "/r", 200, 1.0) is False
    counter.started -= 3601
    assert counter.add("t", "k", "GET", "/r", 500, 1.0) is True
    ((_, bucket),) = counter.drain().items()
    assert (bucket.requests, bucket.server_errors) == (2, 1)
    assert counter.drain() == {}
