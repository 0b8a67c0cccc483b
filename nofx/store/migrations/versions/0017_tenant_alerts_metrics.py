"""Track C: alerts can be acknowledged; tenants own alert rules and custom metrics.

Revision ID: 0017_trackc
Revises: 0006_sec_api
"""

import sqlalchemy as sa
from alembic import op

revision = "0017_trackc"
down_revision = "0006_sec_api"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("acknowledged_by", sa.String(120), nullable=True))
    op.create_table(
        "alert_rules",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("rule_id", sa.String(100), primary_key=True),
        sa.Column("metric", sa.String(100), nullable=False),
        sa.Column("comparison", sa.String(10), nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("severity", sa.String(20), nullable=False),
        sa.Column("min_samples", sa.Integer, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "custom_metrics",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("sql", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(120), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("custom_metrics")
    op.drop_table("alert_rules")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("acknowledged_by")
        batch.drop_column("acknowledged_at")
