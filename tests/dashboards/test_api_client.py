"""The Alerts page resolves an alert through the real API with the user's key."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from dashboards import api
from nofx.alerts import AlertService, Observation, evaluate, load_rules
from nofx.api.app import create_app
from nofx.security import ApiKeyService, Scope
from nofx.store import EventStore


def raise_one_alert(store: EventStore) -> str:
    rules = load_rules()
    rule = next(r for r in rules if r.metric == "orchestration_failure_rate")
    observation = Observation(metric=rule.metric, subject="fleet", value=0.5, samples=100)
    result = AlertService(store).sync(evaluate(rules, [observation]), {rule.metric})
    return result.raised[0].alert_id


def test_resolve_with_a_write_key_and_refusals_explained(store: EventStore) -> None:
    alert_id = raise_one_alert(store)
    keys = ApiKeyService(store)
    reader = keys.create("default", "viewer", {Scope.READ}).plaintext
    writer = keys.create("default", "oncall", {Scope.WRITE}).plaintext
    with TestClient(create_app(store=store, auth_required=True)) as client:
        with pytest.raises(api.ApiRefused, match="paste an API key"):
            api.resolve_alert(client, " ", alert_id)
        with pytest.raises(api.ApiRefused, match="403"):
            api.resolve_alert(client, reader, alert_id)
        resolved = api.resolve_alert(client, writer, alert_id, "rolled back")
        assert resolved["status"] == "resolved"
        assert resolved["resolved_by"] == writer.split("_")[1]
        with pytest.raises(api.ApiRefused, match=r"409.*already resolved"):
            api.resolve_alert(client, writer, alert_id)
    assert AlertService(store).get(alert_id).status == "resolved"


def test_an_unreachable_api_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    monkeypatch.setenv("NOFX_API_URL", "http://127.0.0.1:1/")
    assert api.api_url() == "http://127.0.0.1:1"
    with (
        httpx.Client(base_url=api.api_url(), timeout=2) as client,
        pytest.raises(api.ApiRefused, match="did not answer"),
    ):
        api.resolve_alert(client, "nofx_x_y", "alr_1")


def test_the_page_lists_and_acknowledges_only_the_keys_tenant(store: EventStore) -> None:
    alert_id = raise_one_alert(store)  # the default tenant's
    keys = ApiKeyService(store)
    mine = keys.create("default", "oncall", {Scope.WRITE}).plaintext
    theirs = keys.create("acme", "other", {Scope.WRITE}).plaintext
    with TestClient(create_app(store=store, auth_required=True)) as client:
        assert api.list_alerts(client, theirs, "open") == []
        with pytest.raises(api.ApiRefused, match="404"):
            api.acknowledge_alert(client, theirs, alert_id)
        assert [a["alert_id"] for a in api.list_alerts(client, mine, "open")] == [alert_id]
        acked = api.acknowledge_alert(client, mine, alert_id, "looking")
        assert acked["status"] == "acknowledged"
        assert api.list_alerts(client, mine, "open") == []
        assert [a["alert_id"] for a in api.list_alerts(client, mine, "acknowledged")] == [alert_id]
        assert api.resolve_alert(client, mine, alert_id)["status"] == "resolved"
