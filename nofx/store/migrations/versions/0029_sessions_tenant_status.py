"""An index on sessions (tenant_id, status, created_at) (ADR 0029).

A tenant's sessions of one status, newest first (``GET /orchestration/sessions?status=``),
were found through ``ix_sessions_tenant_created``: every session the tenant ever had, read
and filtered. The same index answers a tenant's count of open sessions from the index
alone.

Revision ID: 0029_tenant_status
Revises: 0017_trackc
"""

from alembic import op

revision = "0029_tenant_status"
down_revision = "0017_trackc"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_sessions_tenant_status", "sessions", ["tenant_id", "status", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_sessions_tenant_status", table_name="sessions")
