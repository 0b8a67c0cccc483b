"""Alerts: rules over operational metrics, evaluated as a pure function, stored as events.

The data platform computes ``Observation``s (a metric's value for a subject: the fleet, an
agent pool, a model, an API process) after each refresh; ``evaluate`` turns them into
``Firing``s by the rules; ``AlertService.sync`` records them. An alert is identified by its
fingerprint (rule + subject): while it keeps firing it stays one open alert whose
occurrences count up (deduplicated), it resolves itself when an evaluation of its metric no
longer fires, and a person can resolve it by hand. A resolved alert that fires again is a
new alert. Every change is an event in the tenant's ``alerts-<tenant>`` stream, projected
into the ``alerts`` table in the same transaction; each new alert is delivered to a
webhook when one is configured, and the delivery's outcome is an event too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import and_, insert, or_, select, update

from nofx.alert_rules import (
    DEFAULT_RULES,
    FORECAST_PREFIX,
    AlertRule,
    Comparison,
    Severity,
    load_rules,
)
from nofx.data_contract import StreamType
from nofx.domain import Event, NewEvent, new_id, utcnow
from nofx.errors import ConflictError, NotFoundError
from nofx.settings import Settings
from nofx.store import EventStore
from nofx.store.event_store import as_utc
from nofx.store.schema import alerts as alerts_table

STREAM_TYPE = StreamType.ALERT
# Alerts about what every tenant shares (API processes, the models): the operator's, read
# with the ``metrics`` scope. "@" cannot start a tenant id sent in X-Tenant-ID.
FLEET_TENANT = "@fleet"
ACTIVE = ("open", "acknowledged")
__all__ = [
    "DEFAULT_RULES",
    "FLEET_TENANT",
    "AlertRule",
    "AlertService",
    "Comparison",
    "Observation",
    "Severity",
    "evaluate",
    "load_rules",
]


@dataclass(frozen=True)
class Observation:
    metric: str
    subject: str
    value: float
    samples: int = 1
    detail: str = ""  # e.g. the forecast behind a predictive observation, shown in the alert
    tenant_id: str = FLEET_TENANT  # whose alert it is: a tenant's, or the operator's


def by_tenant(observations: Iterable[Observation]) -> dict[str, list[Observation]]:
    """Observations grouped by the tenant they belong to (each evaluated on its own rules)."""
    out: dict[str, list[Observation]] = {}
    for observation in observations:
        out.setdefault(observation.tenant_id, []).append(observation)
    return out


@dataclass(frozen=True)
class Firing:
    rule: AlertRule
    observation: Observation

    @property
    def fingerprint(self) -> str:
        return f"{self.rule.rule_id}/{self.observation.subject}"

    @property
    def message(self) -> str:
        o, r = self.observation, self.rule
        word = "above" if r.comparison is Comparison.ABOVE else "below"
        return (
            f"{r.metric} for {o.subject} is {o.value:.4g}, {word} the threshold {r.threshold:g} "
            f"({o.samples} samples)" + (f"; {o.detail}" if o.detail else "")
        )


@dataclass(frozen=True)
class ForecastPoint:
    """A forecast of a metric ``hours_ahead`` from now: the point value and, when the
    forecaster gives one, the upper band (e.g. its p90)."""

    hours_ahead: float
    value: float
    upper: float | None = None


def predictive_rule(rule: AlertRule, horizon_h: float) -> AlertRule:
    """The rule, applied to the forecast: it fires now when the forecast says the threshold
    will be crossed within ``horizon_h`` hours (its own id, so both can be open at once)."""
    return AlertRule(
        rule_id=f"{rule.rule_id}_forecast",
        metric=f"{FORECAST_PREFIX}{rule.metric}",
        comparison=rule.comparison,
        threshold=rule.threshold,
        severity=rule.severity,
        min_samples=1,
        description=f"forecast within {horizon_h:g} h: {rule.description}",
    )


def forecast_observation(
    rule: AlertRule, subject: str, points: Iterable[ForecastPoint], horizon_h: float
) -> Observation | None:
    """The forecast's worst value within the horizon (highest for an 'above' rule, lowest
    for 'below'), with when it first crosses the threshold and the forecast itself in the
    detail; None when there is no forecast point within the horizon."""
    ahead = sorted(
        (p for p in points if 0 <= p.hours_ahead <= horizon_h), key=lambda p: p.hours_ahead
    )
    if not ahead:
        return None
    above = rule.comparison is Comparison.ABOVE
    worst = (max if above else min)(ahead, key=lambda p: p.value)
    crossing = next((p for p in ahead if rule.fires(p.value)), None)
    series = ", ".join(f"+{p.hours_ahead:g}h {p.value:.3g}" for p in ahead[:12])
    when = (
        f"crosses {rule.threshold:g} in {crossing.hours_ahead:g} h"
        if crossing is not None
        else f"stays within {rule.threshold:g}"
    )
    band = "" if worst.upper is None else f" (upper band {worst.upper:.3g})"
    return Observation(
        metric=f"{FORECAST_PREFIX}{rule.metric}",
        subject=subject,
        value=worst.value,
        samples=len(ahead),
        detail=f"forecast {when}; worst {worst.value:.3g} at +{worst.hours_ahead:g} h{band}; "
        f"forecast: {series}",
    )


def evaluate(rules: Iterable[AlertRule], observations: Iterable[Observation]) -> list[Firing]:
    """Every (rule, observation) pair on the same metric that breaks the rule, with enough
    samples to mean something."""
    by_metric: dict[str, list[AlertRule]] = {}
    for rule in rules:
        by_metric.setdefault(rule.metric, []).append(rule)
    firings = []
    for observation in observations:
        for rule in by_metric.get(observation.metric, []):
            if observation.samples >= rule.min_samples and rule.fires(observation.value):
                firings.append(Firing(rule, observation))
    return sorted(firings, key=lambda f: f.fingerprint)


@dataclass(frozen=True)
class Alert:
    alert_id: str
    tenant_id: str
    rule_id: str
    metric: str
    subject: str
    fingerprint: str
    severity: str
    status: str
    message: str
    value: float
    threshold: float
    occurrences: int
    first_seen_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SyncResult:
    raised: list[Alert]
    repeated: list[Alert]
    resolved: list[Alert]


def _row_to_alert(row: Any) -> Alert:
    m = row._mapping
    return Alert(
        alert_id=m["alert_id"],
        tenant_id=m["tenant_id"],
        rule_id=m["rule_id"],
        metric=m["metric"],
        subject=m["subject"],
        fingerprint=m["fingerprint"],
        severity=m["severity"],
        status=m["status"],
        message=m["message"],
        value=m["value"],
        threshold=m["threshold"],
        occurrences=m["occurrences"],
        first_seen_at=as_utc(m["first_seen_at"]),
        last_seen_at=as_utc(m["last_seen_at"]),
        resolved_at=None if m["resolved_at"] is None else as_utc(m["resolved_at"]),
        resolved_by=m["resolved_by"],
        acknowledged_at=None if m["acknowledged_at"] is None else as_utc(m["acknowledged_at"]),
        acknowledged_by=m["acknowledged_by"],
    )


class AlertService:
    def __init__(self, store: EventStore) -> None:
        self.store = store

    def _write(self, tenant_id: str, event_type: str, payload: dict[str, Any]) -> list[Event]:
        with self.store.transaction() as tx:
            written = tx.append(
                f"alerts-{tenant_id}",
                STREAM_TYPE,
                tenant_id,
                [NewEvent(type=event_type, payload=payload)],
            )
            for event in written:
                self._project(tx.conn, event)
        return written

    @staticmethod
    def _project(conn: Any, event: Event) -> None:
        p = event.payload
        where = alerts_table.c.alert_id == p["alert_id"]
        if event.type == "AlertRaised":
            conn.execute(
                insert(alerts_table),
                {
                    "alert_id": p["alert_id"],
                    "tenant_id": event.tenant_id,
                    "rule_id": p["rule_id"],
                    "metric": p["metric"],
                    "subject": p["subject"],
                    "fingerprint": p["fingerprint"],
                    "severity": p["severity"],
                    "status": "open",
                    "message": p["message"],
                    "value": p["value"],
                    "threshold": p["threshold"],
                    "occurrences": 1,
                    "first_seen_at": event.occurred_at,
                    "last_seen_at": event.occurred_at,
                },
            )
        elif event.type == "AlertRepeated":
            conn.execute(
                update(alerts_table)
                .where(where)
                .values(
                    occurrences=alerts_table.c.occurrences + 1,
                    value=p["value"],
                    message=p["message"],
                    last_seen_at=event.occurred_at,
                )
            )
        elif event.type == "AlertAcknowledged":
            conn.execute(
                update(alerts_table)
                .where(where)
                .values(
                    status="acknowledged",
                    acknowledged_at=event.occurred_at,
                    acknowledged_by=p["by"],
                )
            )
        elif event.type == "AlertResolved":
            conn.execute(
                update(alerts_table)
                .where(where)
                .values(status="resolved", resolved_at=event.occurred_at, resolved_by=p["by"])
            )

    def sync(
        self,
        firings: list[Firing],
        evaluated_metrics: set[str],
        *,
        tenant_id: str = "default",
    ) -> SyncResult:
        """Record one evaluation: new firings raise alerts, firing ones repeat, and open
        alerts of an evaluated metric that no longer fire resolve themselves."""
        open_alerts = {
            a.fingerprint: a
            for status in ACTIVE
            for a in self.list(tenant_id=tenant_id, status=status)
        }
        result = SyncResult([], [], [])
        firing_now = set()
        for firing in firings:
            firing_now.add(firing.fingerprint)
            payload = {
                "rule_id": firing.rule.rule_id,
                "metric": firing.rule.metric,
                "subject": firing.observation.subject,
                "fingerprint": firing.fingerprint,
                "severity": firing.rule.severity.value,
                "message": firing.message,
                "value": firing.observation.value,
                "threshold": firing.rule.threshold,
                "samples": firing.observation.samples,
            }
            existing = open_alerts.get(firing.fingerprint)
            if existing is None:
                alert_id = new_id("alr")
                self._write(tenant_id, "AlertRaised", {"alert_id": alert_id, **payload})
                result.raised.append(self.get(alert_id))
            else:
                self._write(tenant_id, "AlertRepeated", {"alert_id": existing.alert_id, **payload})
                result.repeated.append(self.get(existing.alert_id))
        for fingerprint, alert in open_alerts.items():
            if fingerprint not in firing_now and alert.metric in evaluated_metrics:
                self._write(
                    tenant_id,
                    "AlertResolved",
                    {"alert_id": alert.alert_id, "by": "system", "note": "condition cleared"},
                )
                result.resolved.append(self.get(alert.alert_id))
        return result

    def acknowledge(self, alert_id: str, *, by: str, note: str = "", tenant_id: str) -> Alert:
        """Someone is on it: the alert stays active (and keeps counting) but says who."""
        alert = self.get(alert_id, tenant_id=tenant_id)
        if alert.status != "open":
            raise ConflictError(
                f"alert {alert_id} is {alert.status}, not open",
                hint="only an open alert can be acknowledged",
            )
        self._write(
            alert.tenant_id, "AlertAcknowledged", {"alert_id": alert_id, "by": by, "note": note}
        )
        return self.get(alert_id)

    def resolve(self, alert_id: str, *, by: str, note: str = "", tenant_id: str) -> Alert:
        alert = self.get(alert_id, tenant_id=tenant_id)
        if alert.status not in ACTIVE:
            raise ConflictError(
                f"alert {alert_id} is already {alert.status}",
                hint="a resolved alert that fires again comes back as a new alert",
            )
        self._write(
            alert.tenant_id, "AlertResolved", {"alert_id": alert_id, "by": by, "note": note}
        )
        return self.get(alert_id)

    def get(self, alert_id: str, *, tenant_id: str | None = None) -> Alert:
        query = select(alerts_table).where(alerts_table.c.alert_id == alert_id)
        if tenant_id is not None:
            query = query.where(alerts_table.c.tenant_id == tenant_id)
        with self.store.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFoundError(f"no alert {alert_id!r}", hint="list alerts to find it")
        return _row_to_alert(row)

    def deliver(
        self,
        alerts: list[Alert],
        url: str | None = None,
        *,
        attempts: int = 3,
        timeout_s: float = 5.0,
    ) -> int:
        """POST each alert to the webhook (``NOFX_ALERT_WEBHOOK_URL``); returns how many were
        delivered. Each outcome is an event, so a failed delivery is visible, not lost."""
        url = url or Settings.from_env().alert_webhook_url
        if not url or not alerts:
            return 0
        delivered = 0
        with httpx.Client(timeout=timeout_s) as client:
            for alert in alerts:
                body = {
                    k: v.isoformat() if isinstance(v, datetime) else v
                    for k, v in {**alert.as_dict(), "source": "nofx"}.items()
                }
                error = ""
                for _ in range(attempts):
                    try:
                        response = client.post(
                            url, json=body, headers={"Idempotency-Key": alert.alert_id}
                        )
                    except httpx.HTTPError as exc:
                        error = f"{type(exc).__name__}: {exc}"
                        continue
                    if response.is_success:
                        error = ""
                        break
                    error = f"HTTP {response.status_code}"
                payload = {"alert_id": alert.alert_id, "url": url, "at": utcnow().isoformat()}
                if error:
                    self._write(alert.tenant_id, "AlertDeliveryFailed", {**payload, "error": error})
                else:
                    delivered += 1
                    self._write(alert.tenant_id, "AlertDelivered", payload)
        return delivered

    def list(
        self,
        *,
        tenant_id: str | None = None,
        status: str | None = None,
        severity: str | None = None,
        limit: int = 1000,
        before: tuple[datetime, str] | None = None,
    ) -> list[Alert]:
        """Newest activity first; ``before`` (last_seen_at, alert_id) continues a page."""
        t = alerts_table.c
        query = select(alerts_table).order_by(t.last_seen_at.desc(), t.alert_id.desc())
        if tenant_id is not None:
            query = query.where(t.tenant_id == tenant_id)
        if status is not None:
            query = query.where(t.status == status)
        if severity is not None:
            query = query.where(t.severity == severity)
        if before is not None:
            seen, alert_id = before
            query = query.where(
                or_(t.last_seen_at < seen, and_(t.last_seen_at == seen, t.alert_id < alert_id))
            )
        with self.store.engine.connect() as conn:
            return [_row_to_alert(r) for r in conn.execute(query.limit(limit))]
