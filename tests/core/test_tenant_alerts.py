"""Alerts and alert rules belong to tenants: over HTTP with real keys, a tenant sees and
manages only its own; the operator's fleet alerts need the metrics scope; acknowledging."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from nofx.alert_rules import (
    DEFAULT_RULES,
    AlertRule,
    Comparison,
    TenantRules,
    check_metric,
    effective_rules,
)
from nofx.alerts import FLEET_TENANT, AlertService, Observation, by_tenant, evaluate
from nofx.errors import ConflictError, NotFoundError, ValidationError
from nofx.security import ApiKeyService, Scope
from nofx.store import EventStore

FAILING = Observation("orchestration_failure_rate", "fleet", 0.2, samples=100)


@pytest.fixture
def world(store: EventStore) -> Iterator[dict[str, Any]]:
    from nofx.api.app import create_app

    keys = ApiKeyService(store)
    plain = {
        "a": keys.create("acme", "a", {Scope.WRITE}).plaintext,
        "a_read": keys.create("acme", "ar", {Scope.READ}).plaintext,
        "b": keys.create("bolt", "b", {Scope.ADMIN}).plaintext,
        "operator": keys.create("ops", "op", {Scope.WRITE, Scope.METRICS}).plaintext,
    }
    alerts = AlertService(store)
    (mine,) = alerts.sync(evaluate(DEFAULT_RULES, [FAILING]), set(), tenant_id="acme").raised
    slow = Observation("api_p95_ms", "host-1", 900.0, samples=50)
    (fleet,) = alerts.sync(evaluate(DEFAULT_RULES, [slow]), set(), tenant_id=FLEET_TENANT).raised
    with TestClient(create_app(store=store, auth_required=True)) as client:
        yield {
            "client": client,
            "auth": {k: {"Authorization": f"Bearer {v}"} for k, v in plain.items()},
            "mine": mine.alert_id,
            "fleet": fleet.alert_id,
            "store": store,
        }


def test_another_tenant_can_neither_read_nor_acknowledge_nor_resolve(world: dict) -> None:
    client, auth, mine = world["client"], world["auth"], world["mine"]
    assert client.get("/api/v1/alerts", headers=auth["b"]).json()["items"] == []
    for method, path in (
        ("get", f"/api/v1/alerts/{mine}"),
        ("post", f"/api/v1/alerts/{mine}/acknowledge"),
        ("post", f"/api/v1/alerts/{mine}/resolve"),
    ):
        answer = getattr(client, method)(path, headers=auth["b"])
        assert answer.status_code == 404, (method, path)  # not 403: existence is not revealed
    # and it is untouched for its owner
    assert client.get(f"/api/v1/alerts/{mine}", headers=auth["a"]).json()["status"] == "open"
    listed = client.get("/api/v1/alerts", headers=auth["a"]).json()["items"]
    assert [a["alert_id"] for a in listed] == [mine]  # the fleet alert is not the tenant's


def test_a_tenant_acknowledges_then_resolves_its_alert(world: dict) -> None:
    client, auth, mine = world["client"], world["auth"], world["mine"]
    assert (
        client.post(f"/api/v1/alerts/{mine}/acknowledge", headers=auth["a_read"]).status_code == 403
    )
    acked = client.post(
        f"/api/v1/alerts/{mine}/acknowledge", json={"note": "on it"}, headers=auth["a"]
    )
    assert acked.status_code == 200
    body = acked.json()
    assert body["status"] == "acknowledged" and body["acknowledged_by"]
    assert client.post(f"/api/v1/alerts/{mine}/acknowledge", headers=auth["a"]).status_code == 409
    listed = client.get("/api/v1/alerts", params={"status": "acknowledged"}, headers=auth["a"])
    assert [a["alert_id"] for a in listed.json()["items"]] == [mine]
    # still firing: the acknowledged alert keeps counting instead of a second alert opening
    again = AlertService(world["store"]).sync(
        evaluate(DEFAULT_RULES, [FAILING]), {"orchestration_failure_rate"}, tenant_id="acme"
    )
    assert again.raised == [] and again.repeated[0].status == "acknowledged"
    resolved = client.post(f"/api/v1/alerts/{mine}/resolve", headers=auth["a"]).json()
    assert resolved["status"] == "resolved"


def test_fleet_alerts_are_the_operators(world: dict) -> None:
    client, auth, fleet = world["client"], world["auth"], world["fleet"]
    for who in ("a", "b"):
        denied = client.get("/api/v1/alerts", params={"scope": "fleet"}, headers=auth[who])
        assert denied.status_code == 403
        assert client.get(f"/api/v1/alerts/{fleet}", headers=auth[who]).status_code == 404
    listed = client.get("/api/v1/alerts", params={"scope": "fleet"}, headers=auth["operator"])
    assert [a["alert_id"] for a in listed.json()["items"]] == [fleet]
    acked = client.post(
        f"/api/v1/alerts/{fleet}/acknowledge", params={"scope": "fleet"}, headers=auth["operator"]
    )
    assert acked.json()["status"] == "acknowledged"


def test_rules_over_http_are_per_tenant(world: dict) -> None:
    client, auth = world["client"], world["auth"]
    rule = {"metric": "session_failure_rate", "comparison": "above", "threshold": 0.3}
    put = client.put("/api/v1/alert-rules/orchestration_failure_rate", json=rule, headers=auth["a"])
    assert put.status_code == 200 and put.json()["source"] == "tenant"
    mine = {r["rule_id"]: r for r in client.get("/api/v1/alert-rules", headers=auth["a"]).json()}
    theirs = {r["rule_id"]: r for r in client.get("/api/v1/alert-rules", headers=auth["b"]).json()}
    assert mine["orchestration_failure_rate"]["threshold"] == 0.3
    assert theirs["orchestration_failure_rate"]["threshold"] == 0.01
    assert theirs["orchestration_failure_rate"]["source"] == "default"
    bad = client.put(
        "/api/v1/alert-rules/x", json={**rule, "metric": "drop_tables"}, headers=auth["a"]
    )
    assert bad.status_code == 422
    assert (
        client.delete(
            "/api/v1/alert-rules/orchestration_failure_rate", headers=auth["b"]
        ).status_code
        == 404
    )
    assert (
        client.delete(
            "/api/v1/alert-rules/orchestration_failure_rate", headers=auth["a"]
        ).status_code
        == 204
    )
    assert TenantRules(world["store"]).list("acme") == []


def test_a_tenant_rule_overrides_the_default_for_that_tenant_only(store: EventStore) -> None:
    rules = TenantRules(store)
    loose = AlertRule(
        "orchestration_failure_rate", "orchestration_failure_rate", Comparison.ABOVE, 0.3
    )
    rules.put("acme", loose)
    rules.put("acme", AlertRule("spend", "custom:daily_spend", Comparison.ABOVE, 5.0))
    assert rules.all_tenants().keys() == {"acme"}
    acme = rules.effective("acme")
    assert {r.rule_id: r.threshold for r in acme}["orchestration_failure_rate"] == 0.3
    assert "spend" in {r.rule_id for r in acme}
    assert {r.rule_id: r.threshold for r in rules.effective("bolt")}[
        "orchestration_failure_rate"
    ] == 0.01
    # the same observation fires for one tenant and not for the other
    seen = [
        Observation("orchestration_failure_rate", "fleet", 0.2, 100, tenant_id=t)
        for t in ("acme", "bolt")
    ]
    grouped = by_tenant(seen)
    assert evaluate(acme, grouped["acme"]) == []
    assert len(evaluate(rules.effective("bolt"), grouped["bolt"])) == 1
    with pytest.raises(NotFoundError):
        rules.remove("bolt", "spend")


@pytest.mark.parametrize(
    "metric", ["session_failure_rate", "forecast:pool_utilisation", "custom:weekly_cost"]
)
def test_rules_may_watch_built_in_forecast_and_custom_metrics(metric: str) -> None:
    assert check_metric(metric) == metric


@pytest.mark.parametrize("metric", ["nope", "forecast:nope", "custom:Bad Name", "custom:"])
def test_unknown_metrics_are_refused(metric: str) -> None:
    with pytest.raises(ValidationError):
        check_metric(metric)


def test_effective_rules_keep_defaults_and_add_own() -> None:
    own = [AlertRule("x", "api_p95_ms", Comparison.ABOVE, 1.0)]
    assert len(effective_rules(DEFAULT_RULES, own)) == len(DEFAULT_RULES) + 1


def test_only_open_alerts_can_be_acknowledged(store: EventStore) -> None:
    alerts = AlertService(store)
    (alert,) = alerts.sync(evaluate(DEFAULT_RULES, [FAILING]), set(), tenant_id="acme").raised
    alerts.resolve(alert.alert_id, by="ops", tenant_id="acme")
    with pytest.raises(ConflictError):
        alerts.acknowledge(alert.alert_id, by="ops", tenant_id="acme")
