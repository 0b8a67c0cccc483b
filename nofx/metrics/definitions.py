"""A tenant's custom metrics, kept as events (``custom-metrics-<tenant>``) and projected
into ``custom_metrics``; the data platform computes them after each refresh."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select

from nofx.data_contract import StreamType
from nofx.domain import NewEvent
from nofx.errors import NotFoundError, ValidationError
from nofx.metrics.sandbox import check_metric_sql
from nofx.store import EventStore
from nofx.store.event_store import as_utc
from nofx.store.schema import custom_metrics as table

NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
MAX_METRICS_PER_TENANT = 20
STREAM_TYPE = StreamType.CUSTOM_METRIC


@dataclass(frozen=True)
class CustomMetric:
    tenant_id: str
    name: str
    sql: str
    description: str
    created_by: str | None
    updated_at: datetime

    @property
    def metric(self) -> str:
        """How alert rules name it."""
        return f"custom:{self.name}"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "metric": self.metric}


def _row(m: Any) -> CustomMetric:
    return CustomMetric(
        tenant_id=m["tenant_id"],
        name=m["name"],
        sql=m["sql"],
        description=m["description"],
        created_by=m["created_by"],
        updated_at=as_utc(m["updated_at"]),
    )


class CustomMetricService:
    def __init__(self, store: EventStore) -> None:
        self.store = store

    def define(
        self, tenant_id: str, name: str, sql: str, *, description: str = "", by: str | None = None
    ) -> CustomMetric:
        """Checked before it is stored, so a refused metric never reaches the pipeline."""
        if not NAME.match(name):
            raise ValidationError(
                f"metric name {name!r} is not valid",
                hint="lower-case letters, digits and underscores, starting with a letter, <= 48",
            )
        if len(description) > 500:
            raise ValidationError("the description is limited to 500 characters")
        text = check_metric_sql(sql)
        existing = {m.name for m in self.list(tenant_id)}
        if name not in existing and len(existing) >= MAX_METRICS_PER_TENANT:
            raise ValidationError(
                f"a tenant may define at most {MAX_METRICS_PER_TENANT} metrics",
                hint="delete one you no longer need",
            )
        payload = {"name": name, "sql": text, "description": description, "by": by}
        key = (table.c.tenant_id == tenant_id) & (table.c.name == name)
        with self.store.transaction() as tx:
            (event,) = tx.append(
                f"custom-metrics-{tenant_id}",
                STREAM_TYPE,
                tenant_id,
                [NewEvent(type="CustomMetricDefined", payload=payload)],
            )
            tx.conn.execute(delete(table).where(key))
            tx.conn.execute(
                insert(table),
                {
                    "tenant_id": tenant_id,
                    "name": name,
                    "sql": text,
                    "description": description,
                    "created_by": by,
                    "updated_at": event.occurred_at,
                },
            )
        return self.get(tenant_id, name)

    def remove(self, tenant_id: str, name: str, *, by: str | None = None) -> None:
        self.get(tenant_id, name)
        with self.store.transaction() as tx:
            tx.append(
                f"custom-metrics-{tenant_id}",
                STREAM_TYPE,
                tenant_id,
                [NewEvent(type="CustomMetricDeleted", payload={"name": name, "by": by})],
            )
            tx.conn.execute(
                delete(table).where((table.c.tenant_id == tenant_id) & (table.c.name == name))
            )

    def get(self, tenant_id: str, name: str) -> CustomMetric:
        query = select(table).where((table.c.tenant_id == tenant_id) & (table.c.name == name))
        with self.store.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFoundError(f"no custom metric {name!r}", hint="list your custom metrics")
        return _row(row._mapping)

    def list(self, tenant_id: str | None = None) -> list[CustomMetric]:
        """One tenant's metrics, or every tenant's (for the data platform)."""
        query = select(table).order_by(table.c.tenant_id, table.c.name)
        if tenant_id is not None:
            query = query.where(table.c.tenant_id == tenant_id)
        with self.store.engine.connect() as conn:
            return [_row(r._mapping) for r in conn.execute(query)]
