"""Message bus: agent_communications, consumer offsets, blobs, shared session context.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent_communications",
        sa.Column("message_id", sa.String(100), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(260), nullable=False),
        sa.Column("channel_seq", sa.Integer, nullable=False),
        sa.Column("session_id", sa.String(64), nullable=True),
        sa.Column("sender", sa.String(120), nullable=False),
        sa.Column("body", sa.JSON, nullable=True),
        sa.Column("body_ref", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant_id", "channel", "channel_seq", name="uq_comms_channel_seq"),
    )
    op.create_index("ix_comms_session", "agent_communications", ["session_id"])
    op.create_table(
        "bus_offsets",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("subscriber", sa.String(120), primary_key=True),
        sa.Column("channel", sa.String(260), primary_key=True),
        sa.Column("acked_seq", sa.Integer, nullable=False),
    )
    op.create_table(
        "blobs",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
    )
    op.create_table(
        "session_context",
        sa.Column("session_id", sa.String(64), primary_key=True),
        sa.Column("scope", sa.String(120), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("value", sa.JSON, nullable=True),
        sa.Column("value_ref", sa.String(64), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("session_context")
    op.drop_table("blobs")
    op.drop_table("bus_offsets")
    op.drop_table("agent_communications")
