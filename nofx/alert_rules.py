"""Alert rules: the seed's defaults, an operator's YAML overrides, and each tenant's own.

A rule compares one metric with a threshold. The effective rules of a tenant are the
defaults (or ``NOFX_ALERT_RULES``) with the tenant's own rules on top: a tenant rule with a
default's id replaces it for that tenant only. Tenant rules are events in the tenant's
``alert-rules-<tenant>`` stream, projected into ``alert_rules``; they may watch a built-in
metric, its forecast (``forecast:<metric>``) or one of the tenant's custom metrics
(``custom:<name>``).
"""

from __future__ import annotations

import builtins
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import delete, insert, select

from nofx.data_contract import StreamType
from nofx.domain import NewEvent
from nofx.errors import NotFoundError, ValidationError
from nofx.settings import Settings
from nofx.store import EventStore
from nofx.store.schema import alert_rules as rules_table


class Comparison(StrEnum):
    ABOVE = "above"
    BELOW = "below"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True)
class AlertRule:
    rule_id: str
    metric: str
    comparison: Comparison
    threshold: float
    severity: Severity = Severity.WARNING
    min_samples: int = 1
    description: str = ""

    def fires(self, value: float) -> bool:
        if self.comparison is Comparison.ABOVE:
            return value > self.threshold
        return value < self.threshold


# The seed's defaults: failures > 1%, workflow delays > 10%, prediction accuracy < 85%,
# resource utilisation > 80%, API latency p95 > 200 ms; and any agent anomaly episode.
DEFAULT_RULES: tuple[AlertRule, ...] = (
    AlertRule(
        "orchestration_failure_rate",
        "orchestration_failure_rate",
        Comparison.ABOVE,
        0.01,
        Severity.CRITICAL,
        min_samples=20,
        description="share of finished sessions the orchestrator failed (no agent, timeout, "
        "rate limit, server error, lost worker; not wrong answers: ADR 0018), last 24 hours",
    ),
    # Not a seed rule: failures for any reason, wrong answers included. It is what the
    # session failure model predicts, so its predictive twin warns about waiting sessions.
    AlertRule(
        "session_failure_rate",
        "session_failure_rate",
        Comparison.ABOVE,
        0.20,
        Severity.WARNING,
        min_samples=20,
        description="share of finished sessions that failed for any reason (task or "
        "orchestration), last 24 hours",
    ),
    AlertRule(
        "workflow_delay",
        "workflow_delay_ratio",
        Comparison.ABOVE,
        0.10,
        Severity.WARNING,
        description="workflow runs' realised makespan over the plan, minus one, last 24 hours",
    ),
    AlertRule(
        "prediction_accuracy",
        "prediction_accuracy",
        Comparison.BELOW,
        0.85,
        Severity.WARNING,
        min_samples=20,
        description="balanced accuracy of the champion failure model on known outcomes",
    ),
    AlertRule(
        "resource_utilisation",
        "pool_utilisation",
        Comparison.ABOVE,
        0.80,
        Severity.WARNING,
        description="an agent pool's demand over its capacity after its last scaling decision",
    ),
    AlertRule(
        "agent_anomaly",
        "agent_anomaly_episodes",
        Comparison.ABOVE,
        0,
        Severity.WARNING,
        description="degradation episodes of an agent (latency, errors, cost against its "
        "learned baseline) in the last 24 hours",
    ),
    AlertRule(
        "api_latency_p95",
        "api_p95_ms",
        Comparison.ABOVE,
        200.0,
        Severity.CRITICAL,
        description="worst API process's p95 request latency over the last hour",
    ),
)


def load_rules(path: str | Path | None = None) -> tuple[AlertRule, ...]:
    """The default rules, or those of a YAML file (``NOFX_ALERT_RULES``): a list of mappings
    with rule_id, metric, comparison (above/below), threshold and optional severity,
    min_samples, description. A rule with a default's id replaces that default."""
    path = path or Settings.from_env().alert_rules_file
    if not path:
        return DEFAULT_RULES
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValidationError(
            f"cannot read alert rules from {path}: {exc}",
            hint="point NOFX_ALERT_RULES at a YAML list of rules, or unset it for the defaults",
        ) from exc
    if not isinstance(data, list):
        raise ValidationError(f"{path}: alert rules must be a YAML list of mappings")
    rules = {r.rule_id: r for r in DEFAULT_RULES}
    for index, item in enumerate(data, start=1):
        try:
            rule = AlertRule(
                rule_id=str(item["rule_id"]),
                metric=str(item["metric"]),
                comparison=Comparison(item["comparison"]),
                threshold=float(item["threshold"]),
                severity=Severity(item.get("severity", "warning")),
                min_samples=int(item.get("min_samples", 1)),
                description=str(item.get("description", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError(
                f"{path}: rule {index} is invalid ({type(exc).__name__}: {exc})",
                hint="each rule needs rule_id, metric, comparison (above|below) and threshold",
            ) from exc
        rules[rule.rule_id] = rule
    return tuple(rules.values())


BUILT_IN_METRICS = frozenset(r.metric for r in DEFAULT_RULES)
FORECAST_PREFIX = "forecast:"
CUSTOM_PREFIX = "custom:"
RULE_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
METRIC_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
MAX_RULES_PER_TENANT = 50
STREAM_TYPE = StreamType.ALERT_RULE


def check_metric(metric: str) -> str:
    """A metric a tenant rule may watch: a built-in one, its forecast, or a custom metric."""
    if metric in BUILT_IN_METRICS:
        return metric
    if metric.startswith(FORECAST_PREFIX) and metric[len(FORECAST_PREFIX) :] in BUILT_IN_METRICS:
        return metric
    if metric.startswith(CUSTOM_PREFIX) and METRIC_NAME.match(metric[len(CUSTOM_PREFIX) :]):
        return metric
    raise ValidationError(
        f"unknown metric {metric!r}",
        hint=f"use one of {', '.join(sorted(BUILT_IN_METRICS))}, forecast:<one of them> "
        "or custom:<name of a custom metric you defined>",
    )


def check_rule(rule: AlertRule) -> AlertRule:
    if not RULE_ID.match(rule.rule_id):
        raise ValidationError(
            f"rule id {rule.rule_id!r} is not valid",
            hint="lower-case letters, digits and underscores, starting with a letter, <= 64",
        )
    check_metric(rule.metric)
    if not -1e12 < rule.threshold < 1e12 or rule.threshold != rule.threshold:
        raise ValidationError("the threshold must be a finite number")
    if not 1 <= rule.min_samples <= 1_000_000:
        raise ValidationError("min_samples must be between 1 and 1000000")
    if len(rule.description) > 500:
        raise ValidationError("the description is limited to 500 characters")
    return rule


def effective_rules(defaults: tuple[AlertRule, ...], own: list[AlertRule]) -> tuple[AlertRule, ...]:
    """The defaults with a tenant's own rules on top (same id: the tenant's wins)."""
    rules = {r.rule_id: r for r in defaults}
    rules.update({r.rule_id: r for r in own})
    return tuple(rules.values())


def _rule_from_row(m: Any) -> AlertRule:
    return AlertRule(
        rule_id=m["rule_id"],
        metric=m["metric"],
        comparison=Comparison(m["comparison"]),
        threshold=float(m["threshold"]),
        severity=Severity(m["severity"]),
        min_samples=int(m["min_samples"]),
        description=m["description"],
    )


class TenantRules:
    """A tenant's own alert rules, kept as events and projected for reading."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def put(self, tenant_id: str, rule: AlertRule, *, by: str | None = None) -> AlertRule:
        check_rule(rule)
        own = {r.rule_id for r in self.list(tenant_id)}
        if rule.rule_id not in own and len(own) >= MAX_RULES_PER_TENANT:
            raise ValidationError(
                f"a tenant may define at most {MAX_RULES_PER_TENANT} rules",
                hint="delete a rule you no longer need",
            )
        payload = {
            "rule_id": rule.rule_id,
            "metric": rule.metric,
            "comparison": rule.comparison.value,
            "threshold": rule.threshold,
            "severity": rule.severity.value,
            "min_samples": rule.min_samples,
            "description": rule.description,
            "by": by,
        }
        with self.store.transaction() as tx:
            (event,) = tx.append(
                f"alert-rules-{tenant_id}",
                STREAM_TYPE,
                tenant_id,
                [NewEvent(type="AlertRuleSet", payload=payload)],
            )
            key = (rules_table.c.tenant_id == tenant_id) & (rules_table.c.rule_id == rule.rule_id)
            tx.conn.execute(delete(rules_table).where(key))
            row = {k: v for k, v in payload.items() if k != "by"}
            tx.conn.execute(
                insert(rules_table),
                {**row, "tenant_id": tenant_id, "updated_at": event.occurred_at},
            )
        return rule

    def remove(self, tenant_id: str, rule_id: str, *, by: str | None = None) -> None:
        if rule_id not in {r.rule_id for r in self.list(tenant_id)}:
            raise NotFoundError(
                f"no rule {rule_id!r} of yours",
                hint="a default rule cannot be deleted, only "
                "overridden (e.g. with a threshold that suits you)",
            )
        with self.store.transaction() as tx:
            tx.append(
                f"alert-rules-{tenant_id}",
                STREAM_TYPE,
                tenant_id,
                [NewEvent(type="AlertRuleDeleted", payload={"rule_id": rule_id, "by": by})],
            )
            key = (rules_table.c.tenant_id == tenant_id) & (rules_table.c.rule_id == rule_id)
            tx.conn.execute(delete(rules_table).where(key))

    def list(self, tenant_id: str) -> list[AlertRule]:
        query = (
            select(rules_table)
            .where(rules_table.c.tenant_id == tenant_id)
            .order_by(rules_table.c.rule_id)
        )
        with self.store.engine.connect() as conn:
            return [_rule_from_row(r._mapping) for r in conn.execute(query)]

    def all_tenants(self) -> dict[str, builtins.list[AlertRule]]:
        """Every tenant's own rules (the data platform evaluates all of them)."""
        out: dict[str, builtins.list[AlertRule]] = {}
        with self.store.engine.connect() as conn:
            for row in conn.execute(select(rules_table).order_by(rules_table.c.rule_id)):
                out.setdefault(row._mapping["tenant_id"], []).append(_rule_from_row(row._mapping))
        return out

    def effective(self, tenant_id: str) -> tuple[AlertRule, ...]:
        return effective_rules(load_rules(), self.list(tenant_id))
