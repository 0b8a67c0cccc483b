"""The warehouse contract: what the core writes and what the data platform may rely on.

One place for the stream types of the event store, the shape of ``raw.raw_events`` (the
landed copy of the events table) and the names of the tables dbt publishes. The core's
writers, the ingest checks, the dbt sources (a test compares them), the API and the
dashboards import these names instead of spelling them, so a renamed stream or a new column
is one edit here and a failing test everywhere it was forgotten (ADR 0027).

Domain layer: imports nothing of nofx, so every layer (and ``ml``, ``dashboards``,
``dagster_project``) may import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class StreamType(StrEnum):
    """Every kind of stream the core writes (the ``stream_type`` column of an event)."""

    SESSION = "session"  # session-<id>: request, steps, outcome (nofx.sessions, the runtime)
    AGENT = "agent"  # agent-<id>: registry specs (nofx.registry)
    WORKFLOW = "workflow"  # workflow adaptations and learned estimates (nofx.workflows)
    BUS = "bus"  # channel-<tenant>-<channel>: MessagePublished (nofx.bus)
    BREAKER = "breaker"  # breaker-<agent>: circuit transitions (the runtime's calls)
    POOL = "pool"  # pool-<agent>: PoolConfigured, PoolScaled (nofx.pools)
    ALERT = "alert"  # alerts-<tenant>: raised, repeated, acknowledged, resolved (nofx.alerts)
    ALERT_RULE = "alert_rule"  # alert-rules-<tenant>: a tenant's own rules (nofx.alert_rules)
    CUSTOM_METRIC = "custom_metric"  # custom-metrics-<tenant> (nofx.metrics)
    API_KEY = "apikey"  # apikey-<id>: created, revoked (nofx.security.keys)
    API_USAGE = "api_usage"  # usage buckets the API flushes (nofx.api.usage)
    API_METRICS = "api_metrics"  # per-process latency windows (nofx.api.observability)
    AUDIT = "audit"  # audit-<tenant>: every API write (nofx.api.observability)


@dataclass(frozen=True)
class Column:
    """A column of a warehouse table: its name, a SQL type both DuckDB and PostgreSQL accept,
    and whether a row may leave it empty."""

    name: str
    sql_type: str
    nullable: bool = False


RAW_SCHEMA = "raw"
RAW_EVENTS = "raw_events"
RAW_EVENTS_TABLE = f"{RAW_SCHEMA}.{RAW_EVENTS}"

# The store's event row, in the events table's order (nofx.store.schema.events without the
# position it assigns); the writer inserts exactly these.
EVENT_COLUMNS: tuple[Column, ...] = (
    Column("stream_id", "varchar"),
    Column("stream_type", "varchar"),
    Column("seq", "integer"),
    Column("type", "varchar"),
    Column("tenant_id", "varchar"),
    Column("occurred_at", "timestamp"),
    Column("idempotency_key", "varchar", nullable=True),
    Column("payload", "text"),
)

# raw.raw_events: the event row with its global position, and when the landing copied it
# (the dbt source's loaded_at_field, for freshness).
LOADED_AT = "loaded_at"
RAW_EVENT_COLUMNS: tuple[Column, ...] = (
    Column("position", "bigint"),
    *EVENT_COLUMNS,
    Column(LOADED_AT, "timestamp"),
)


def column_names(columns: tuple[Column, ...]) -> tuple[str, ...]:
    return tuple(c.name for c in columns)


class Mart(StrEnum):
    """The tables dbt publishes (its marts), which the dashboards, the API, ``ml`` and the
    Dagster assets read by name. Their columns and types are enforced by dbt contracts
    (dbt/models/marts/_*.yml)."""

    AGENT_SESSIONS = "agent_sessions"
    AGENTS = "agents"
    AGENT_STEP_CALLS = "agent_step_calls"
    AGENT_PERFORMANCE_DAILY = "agent_performance_daily"
    AGENT_RELATIONSHIPS = "agent_relationships"
    AGENT_COMMUNICATIONS = "agent_communications"
    WORKFLOW_PLANS = "workflow_plans"
    WORKFLOW_EXECUTIONS = "workflow_executions"
    WORKFLOW_ADAPTATIONS = "workflow_adaptations"
    POOL_SCALING_DECISIONS = "pool_scaling_decisions"
    API_LATENCY_WINDOWS = "api_latency_windows"
    API_USAGE_HOURLY = "api_usage_hourly"


# The marts with a tenant_id on every row: what a tenant's custom metric may read.
TENANT_SCOPED_MARTS: tuple[Mart, ...] = tuple(
    m for m in Mart if m not in (Mart.AGENT_PERFORMANCE_DAILY, Mart.API_LATENCY_WINDOWS)
)

# Every event, typed, payload still JSON text: the one staging view readers outside dbt
# query directly (the dashboards' session timeline).
ALL_EVENTS_VIEW = "stg_events"
