"""Table definitions shared by every query. Alembic migrations create them (see migrations/)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# BigInteger is INTEGER on SQLite (so it stays the rowid alias) and BIGINT elsewhere.
Position = BigInteger().with_variant(Integer(), "sqlite")

events = Table(
    "events",
    metadata,
    Column("position", Position, primary_key=True, autoincrement=True),
    Column("stream_id", String(200), nullable=False),
    Column("stream_type", String(50), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("type", String(100), nullable=False),
    Column("tenant_id", String(64), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("idempotency_key", String(300), nullable=True, unique=True),
    Column("payload", JSON, nullable=False),
    UniqueConstraint("stream_id", "seq", name="uq_events_stream_seq"),
    Index("ix_events_stream_type_position", "stream_type", "position"),
)

agents = Table(
    "agents",
    metadata,
    Column("agent_id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("name", String(120), nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", String(20), nullable=False),
    Column("spec", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("tenant_id", "name", name="uq_agents_tenant_name"),
)

agent_capabilities = Table(
    "agent_capabilities",
    metadata,
    Column("agent_id", String(64), primary_key=True),
    Column("capability", String(120), primary_key=True),
    Column("proficiency", Integer, nullable=False),
    Column("tenant_id", String(64), nullable=False),
    Index("ix_agent_capabilities_capability", "tenant_id", "capability"),
)

sessions = Table(
    "sessions",
    metadata,
    Column("session_id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("pattern", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    Column("request", JSON, nullable=False),
    Column("agent_id", String(64), nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("cost_usd", Float, nullable=False, default=0.0),
    Column("input_tokens", Integer, nullable=False, default=0),
    Column("output_tokens", Integer, nullable=False, default=0),
    Column("output", Text, nullable=True),
    Column("error_type", String(100), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("version", Integer, nullable=False, default=0),
    Column("lease_owner", String(100), nullable=True),
    Column("lease_expires_at", DateTime(timezone=True), nullable=True),
    Index("ix_sessions_status_created", "status", "created_at"),
    Index("ix_sessions_tenant_created", "tenant_id", "created_at"),
    # a tenant's sessions of one status, newest first; a tenant's open count, index only
    Index("ix_sessions_tenant_status", "tenant_id", "status", "created_at"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("name", String(120), nullable=False),
    Column("secret_hash", String(128), nullable=False),
    Column("scopes", JSON, nullable=False),
    Column("rate_per_s", Float, nullable=False),
    Column("burst", Float, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Index("ix_api_keys_tenant", "tenant_id"),
)

agent_communications = Table(
    "agent_communications",
    metadata,
    Column("tenant_id", String(64), primary_key=True),  # message ids are per tenant
    Column("message_id", String(100), primary_key=True),
    Column("channel", String(260), nullable=False),
    Column("channel_seq", Integer, nullable=False),
    Column("session_id", String(64), nullable=True),
    Column("sender", String(120), nullable=False),
    Column("body", JSON, nullable=True),
    Column("body_ref", String(64), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("tenant_id", "channel", "channel_seq", name="uq_comms_channel_seq"),
    Index("ix_comms_session", "session_id"),
)

bus_offsets = Table(
    "bus_offsets",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("subscriber", String(120), primary_key=True),
    Column("channel", String(260), primary_key=True),
    Column("acked_seq", Integer, nullable=False),
)

blobs = Table(
    "blobs",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size", Integer, nullable=False),
    Column("data", JSON, nullable=False),
)

session_context = Table(
    "session_context",
    metadata,
    Column("session_id", String(64), primary_key=True),
    Column("scope", String(120), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("value", JSON, nullable=True),
    Column("value_ref", String(64), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Projection of the ``pool-<agent_id>`` streams: each agent pool's size and scaling policy,
# shared by every worker (so a pool scaled by one worker is that size for all).
agent_pools = Table(
    "agent_pools",
    metadata,
    Column("agent_id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("replicas", Integer, nullable=False),
    Column("policy", JSON, nullable=False),
    Column("last_reason", Text, nullable=True),
    Column("last_scaled_at", DateTime(timezone=True), nullable=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Token buckets shared by every API process (several uvicorn workers enforce one limit).
rate_buckets = Table(
    "rate_buckets",
    metadata,
    Column("bucket_key", String(200), primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("updated_epoch_s", Float, nullable=False),
)

# Projection of the ``alerts-<tenant>`` streams: at most one open alert per fingerprint.
alerts = Table(
    "alerts",
    metadata,
    Column("alert_id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("rule_id", String(100), nullable=False),
    Column("metric", String(100), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("fingerprint", String(300), nullable=False),
    Column("severity", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    Column("message", Text, nullable=False),
    Column("value", Float, nullable=False),
    Column("threshold", Float, nullable=False),
    Column("occurrences", Integer, nullable=False),
    Column("first_seen_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    Column("resolved_at", DateTime(timezone=True), nullable=True),
    Column("resolved_by", String(120), nullable=True),
    Column("acknowledged_at", DateTime(timezone=True), nullable=True),
    Column("acknowledged_by", String(120), nullable=True),
    Index("ix_alerts_tenant_status", "tenant_id", "status"),
)

# Projection of the ``alert-rules-<tenant>`` streams: a tenant's own rules and overrides.
alert_rules = Table(
    "alert_rules",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("rule_id", String(100), primary_key=True),
    Column("metric", String(100), nullable=False),
    Column("comparison", String(10), nullable=False),
    Column("threshold", Float, nullable=False),
    Column("severity", String(20), nullable=False),
    Column("min_samples", Integer, nullable=False),
    Column("description", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Projection of the ``custom-metrics-<tenant>`` streams: SQL a tenant runs over its marts.
custom_metrics = Table(
    "custom_metrics",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("sql", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("created_by", String(120), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
