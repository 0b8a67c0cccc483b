"""Message ids are unique per tenant: primary key (tenant_id, message_id).

Before, one tenant's message_id blocked every other tenant from using it (409 for ever) and
told them it existed. Revision ID: 0006_sec_api
Revises: 0005
"""

import warnings

import sqlalchemy as sa
from alembic import op

revision = "0006_sec_api"
down_revision = "0006_sec_policy"
branch_labels = None
depends_on = None

TABLE = "agent_communications"
PK = "agent_communications_pkey"


def _primary_key(columns: list[str]) -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite cannot alter a primary key: batch mode copies the table into a new one
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", sa.exc.SAWarning)  # "pk columns changed": intended
            with op.batch_alter_table(TABLE, recreate="always") as batch:
                batch.create_primary_key(PK, columns)
    else:
        op.drop_constraint(PK, TABLE, type_="primary")
        op.create_primary_key(PK, TABLE, columns)


def upgrade() -> None:
    _primary_key(["tenant_id", "message_id"])


def downgrade() -> None:
    _primary_key(["message_id"])
