"""Scrub inline secrets that agent specs held before they were refused (issue 10).

Agent specs used to accept ``api_key`` (and any other config key) inline; the value
landed in ``agents.spec`` and in the ``AgentRegistered``/``AgentUpdated`` events, and
from there in the warehouse. Specs are now refused with an inline secret and redacted
on read; this one-time pass replaces the stored values with ``[REDACTED]`` so they
are not kept at all. It rewrites event payloads, the one exception to an append-only
log (ADR 0008): a secret must not outlive the fix.
Operators should still rotate any key that was stored this way.

Revision ID: 0006_sec_policy
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from nofx.security.policy import redact_event_payload, redact_spec

revision = "0006_sec_policy"
down_revision = "0005"
branch_labels = None
depends_on = None

agents = sa.table("agents", sa.column("agent_id", sa.String), sa.column("spec", sa.JSON))
events = sa.table(
    "events",
    sa.column("position", sa.BigInteger),
    sa.column("stream_type", sa.String),
    sa.column("type", sa.String),
    sa.column("payload", sa.JSON),
)


def upgrade() -> None:
    conn = op.get_bind()
    for agent_id, spec in conn.execute(sa.select(agents.c.agent_id, agents.c.spec)).all():
        clean = redact_spec(spec) if isinstance(spec, dict) else spec
        if clean != spec:
            conn.execute(sa.update(agents).where(agents.c.agent_id == agent_id).values(spec=clean))
    rows = conn.execute(
        sa.select(events.c.position, events.c.type, events.c.payload).where(
            events.c.stream_type == "agent",
            events.c.type.in_(("AgentRegistered", "AgentUpdated")),
        )
    ).all()
    for position, event_type, payload in rows:
        clean = (
            redact_event_payload(str(event_type), payload) if isinstance(payload, dict) else payload
        )
        if clean != payload:
            conn.execute(
                sa.update(events).where(events.c.position == position).values(payload=clean)
            )


def downgrade() -> None:
    """Nothing to undo: the secrets are gone on purpose."""
