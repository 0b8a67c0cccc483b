"""Initial schema: events, agents, agent_capabilities, sessions.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

position = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("position", position, primary_key=True, autoincrement=True),
        sa.Column("stream_id", sa.String(200), nullable=False),
        sa.Column("stream_type", sa.String(50), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("idempotency_key", sa.String(300), nullable=True, unique=True),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.UniqueConstraint("stream_id", "seq", name="uq_events_stream_seq"),
    )
    op.create_index("ix_events_stream_type_position", "events", ["stream_type", "position"])
    op.create_table(
        "agents",
        sa.Column("agent_id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant_id", "name", name="uq_agents_tenant_name"),
    )
    op.create_table(
        "agent_capabilities",
        sa.Column("agent_id", sa.String(64), primary_key=True),
        sa.Column("capability", sa.String(120), primary_key=True),
        sa.Column("proficiency", sa.Integer, nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
    )
    op.create_index(
        "ix_agent_capabilities_capability", "agent_capabilities", ["tenant_id", "capability"]
    )
    op.create_table(
        "sessions",
        sa.Column("session_id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("pattern", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("request", sa.JSON, nullable=False),
        sa.Column("agent_id", sa.String(64), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("input_tokens", sa.Integer, nullable=False),
        sa.Column("output_tokens", sa.Integer, nullable=False),
        sa.Column("output", sa.Text, nullable=True),
        sa.Column("error_type", sa.String(100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("lease_owner", sa.String(100), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_sessions_status_created", "sessions", ["status", "created_at"])
    op.create_index("ix_sessions_tenant_created", "sessions", ["tenant_id", "created_at"])


def downgrade() -> None:
    op.drop_table("sessions")
    op.drop_table("agent_capabilities")
    op.drop_table("agents")
    op.drop_table("events")
