"""Alert rules, deduplication, resolution and webhook delivery, against a real store and a
real local HTTP server standing in for the webhook receiver."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from nofx.alerts import (
    DEFAULT_RULES,
    AlertRule,
    AlertService,
    Comparison,
    Observation,
    evaluate,
    load_rules,
)
from nofx.errors import ConflictError, NotFoundError, ValidationError
from nofx.store import EventStore

FAILURES = Observation("orchestration_failure_rate", "fleet", 0.05, samples=200)
SLOW_API = Observation("api_p95_ms", "host-1", 350.0, samples=60)


def test_the_seed_defaults_are_the_rules() -> None:
    thresholds = {r.rule_id: (r.metric, r.comparison, r.threshold) for r in DEFAULT_RULES}
    assert thresholds == {
        "orchestration_failure_rate": ("orchestration_failure_rate", Comparison.ABOVE, 0.01),
        "workflow_delay": ("workflow_delay_ratio", Comparison.ABOVE, 0.10),
        "prediction_accuracy": ("prediction_accuracy", Comparison.BELOW, 0.85),
        "resource_utilisation": ("pool_utilisation", Comparison.ABOVE, 0.80),
        "api_latency_p95": ("api_p95_ms", Comparison.ABOVE, 200.0),
        "agent_anomaly": ("agent_anomaly_episodes", Comparison.ABOVE, 0),
        # not a seed rule: any failure, what the session failure model predicts
        "session_failure_rate": ("session_failure_rate", Comparison.ABOVE, 0.20),
    }


def test_rules_fire_on_their_metric_with_enough_samples() -> None:
    firings = evaluate(
        DEFAULT_RULES,
        [
            FAILURES,
            Observation("orchestration_failure_rate", "tiny-tenant", 0.5, samples=3),  # too few
            Observation("prediction_accuracy", "nofx-session-failure", 0.9, samples=100),
            SLOW_API,
        ],
    )
    assert [f.fingerprint for f in firings] == [
        "api_latency_p95/host-1",
        "orchestration_failure_rate/fleet",
    ]
    assert "above the threshold 200" in firings[0].message


@given(
    value=st.floats(-1e6, 1e6, allow_nan=False),
    threshold=st.floats(-1e6, 1e6, allow_nan=False),
    samples=st.integers(0, 100),
    min_samples=st.integers(0, 100),
    above=st.booleans(),
)
def test_a_rule_fires_exactly_when_broken_with_enough_samples(
    value: float, threshold: float, samples: int, min_samples: int, above: bool
) -> None:
    comparison = Comparison.ABOVE if above else Comparison.BELOW
    rule = AlertRule("r", "m", comparison, threshold, min_samples=min_samples)
    fired = bool(evaluate([rule], [Observation("m", "s", value, samples)]))
    broken = value > threshold if above else value < threshold
    assert fired == (broken and samples >= min_samples)


def test_rules_from_yaml_override_defaults_and_bad_files_say_what_is_wrong(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "- {rule_id: api_latency_p95, metric: api_p95_ms, comparison: above, threshold: 50}\n"
        "- {rule_id: cost, metric: daily_cost_usd, comparison: above, threshold: 100,"
        " severity: critical}\n"
    )
    monkeypatch.setenv("NOFX_ALERT_RULES", str(path))
    rules = {r.rule_id: r for r in load_rules()}
    assert rules["api_latency_p95"].threshold == 50 and rules["cost"].severity == "critical"
    assert len(rules) == len(DEFAULT_RULES) + 1
    path.write_text("- {rule_id: x, metric: m, comparison: sideways, threshold: 1}\n")
    with pytest.raises(ValidationError, match="rule 1 is invalid"):
        load_rules()
    path.write_text("rule_id: not-a-list\n")
    with pytest.raises(ValidationError, match="YAML list"):
        load_rules()
    with pytest.raises(ValidationError, match="cannot read"):
        load_rules(tmp_path / "missing.yaml")


def test_a_firing_alert_is_deduplicated_then_resolves_itself(store: EventStore) -> None:
    alerts = AlertService(store)
    first = alerts.sync(evaluate(DEFAULT_RULES, [FAILURES]), {"orchestration_failure_rate"})
    assert len(first.raised) == 1 and first.raised[0].status == "open"
    again = alerts.sync(evaluate(DEFAULT_RULES, [FAILURES]), {"orchestration_failure_rate"})
    assert again.raised == [] and again.repeated[0].occurrences == 2
    assert len(alerts.list(status="open")) == 1  # one alert, not one per evaluation

    # an evaluation that did not look at the metric leaves the alert alone
    assert alerts.sync([], {"api_p95_ms"}).resolved == []
    healthy = Observation("orchestration_failure_rate", "fleet", 0.002, samples=200)
    cleared = alerts.sync(evaluate(DEFAULT_RULES, [healthy]), {"orchestration_failure_rate"})
    assert [a.resolved_by for a in cleared.resolved] == ["system"]
    assert alerts.list(status="open") == []
    # firing again later is a new alert, with its own history
    back = alerts.sync(evaluate(DEFAULT_RULES, [FAILURES]), {"orchestration_failure_rate"})
    assert back.raised[0].alert_id != first.raised[0].alert_id
    kinds = [e.type for e in store.read_stream("alerts-default")]
    assert kinds == ["AlertRaised", "AlertRepeated", "AlertResolved", "AlertRaised"]


def test_a_person_resolves_an_alert_once(store: EventStore) -> None:
    alerts = AlertService(store)
    (alert,) = alerts.sync(evaluate(DEFAULT_RULES, [SLOW_API]), {"api_p95_ms"}).raised
    with pytest.raises(NotFoundError):
        alerts.resolve(alert.alert_id, by="ops", tenant_id="other-tenant")
    done = alerts.resolve(alert.alert_id, by="ops", note="scaled the API", tenant_id="default")
    assert (done.status, done.resolved_by) == ("resolved", "ops")
    with pytest.raises(ConflictError, match="already resolved"):
        alerts.resolve(alert.alert_id, by="ops", tenant_id="default")


class Receiver(BaseHTTPRequestHandler):
    received: list[dict] = []
    fail_first = 0

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if Receiver.fail_first > 0:
            Receiver.fail_first -= 1
            self.send_response(503)
        else:
            Receiver.received.append({**body, "key": self.headers["Idempotency-Key"]})
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    Receiver.received, Receiver.fail_first = [], 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


def test_new_alerts_reach_the_webhook_and_failures_are_recorded(
    store: EventStore, webhook: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    alerts = AlertService(store)
    raised = alerts.sync(evaluate(DEFAULT_RULES, [FAILURES, SLOW_API]), set()).raised
    Receiver.fail_first = 1  # the receiver hiccups once: the retry delivers
    monkeypatch.setenv("NOFX_ALERT_WEBHOOK_URL", webhook)
    assert alerts.deliver(raised) == 2
    assert sorted(r["rule_id"] for r in Receiver.received) == [
        "api_latency_p95",
        "orchestration_failure_rate",
    ]
    assert {r["key"] for r in Receiver.received} == {a.alert_id for a in raised}
    # a receiver that is down: nothing delivered, and the failure is an event, not silence
    assert alerts.deliver(raised[:1], url="http://127.0.0.1:9/down", attempts=1) == 0
    failed = [e for e in store.read_stream("alerts-default") if e.type == "AlertDeliveryFailed"]
    assert failed and failed[0].payload["alert_id"] == raised[0].alert_id
    monkeypatch.delenv("NOFX_ALERT_WEBHOOK_URL")
    assert alerts.deliver(raised) == 0  # no webhook configured: nothing to deliver


def test_alerts_over_http(store: EventStore) -> None:
    from nofx.api.app import create_app

    alerts = AlertService(store)
    alerts.sync(evaluate(DEFAULT_RULES, [FAILURES, SLOW_API]), set())
    with TestClient(create_app(store=store, auth_required=False)) as client:
        page = client.get("/api/v1/alerts", params={"status": "open", "limit": 1}).json()
        assert len(page["items"]) == 1 and page["next_cursor"]
        rest = client.get(
            "/api/v1/alerts", params={"status": "open", "cursor": page["next_cursor"]}
        ).json()
        ids = {a["alert_id"] for a in page["items"] + rest["items"]}
        assert len(ids) == 2 and rest["next_cursor"] is None
        one = page["items"][0]["alert_id"]
        assert client.get(f"/api/v1/alerts/{one}").json()["status"] == "open"
        resolved = client.post(f"/api/v1/alerts/{one}/resolve", json={"note": "fixed"})
        assert resolved.status_code == 200 and resolved.json()["status"] == "resolved"
        again = client.post(f"/api/v1/alerts/{one}/resolve", json={})
        assert again.status_code == 409
        assert again.headers["content-type"].startswith("application/problem+json")
        critical = client.get("/api/v1/alerts", params={"severity": "critical"}).json()
        assert all(a["severity"] == "critical" for a in critical["items"])
        assert client.get("/api/v1/alerts/alr_missing").status_code == 404
        other = client.get("/api/v1/alerts", headers={"X-Tenant-ID": "acme"}).json()
        assert other["items"] == []


def test_predictive_alert_fires_before_the_threshold_is_crossed_with_its_forecast() -> None:
    from nofx.alerts import DEFAULT_RULES, ForecastPoint, forecast_observation, predictive_rule

    rule = next(r for r in DEFAULT_RULES if r.rule_id == "resource_utilisation")
    ahead = predictive_rule(rule, horizon_h=6)
    rising = [ForecastPoint(h, 0.6 + 0.05 * h, upper=0.7 + 0.05 * h) for h in range(1, 10)]
    observed = forecast_observation(rule, "pool:coders", rising, horizon_h=6)
    assert observed is not None and observed.value == pytest.approx(0.9)  # worst within 6 h
    (firing,) = evaluate([ahead], [observed])
    assert firing.fingerprint == "resource_utilisation_forecast/pool:coders"
    assert "crosses 0.8 in 5 h" in firing.message and "+1h 0.65" in firing.message
    # the same forecast over a shorter horizon stays under the threshold: nothing fires
    calm = forecast_observation(rule, "pool:coders", rising, horizon_h=3)
    assert calm is not None and evaluate([ahead], [calm]) == []
    assert "stays within 0.8" in calm.detail
    assert forecast_observation(rule, "pool:coders", rising, horizon_h=0.5) is None


@given(
    values=st.lists(st.floats(0, 2, allow_nan=False), min_size=1, max_size=24),
    horizon=st.integers(1, 24),
)
def test_a_predictive_rule_fires_iff_some_forecast_within_the_horizon_crosses(
    values: list[float], horizon: int
) -> None:
    from nofx.alerts import DEFAULT_RULES, ForecastPoint, forecast_observation, predictive_rule

    for rule in DEFAULT_RULES:
        points = [ForecastPoint(h + 1, v) for h, v in enumerate(values)]
        observed = forecast_observation(rule, "fleet", points, horizon_h=horizon)
        within = [v for h, v in enumerate(values) if h + 1 <= horizon]
        if not within:
            assert observed is None
            continue
        assert observed is not None
        fired = bool(evaluate([predictive_rule(rule, horizon)], [observed]))
        assert fired == any(rule.fires(v) for v in within)
