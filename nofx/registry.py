"""The agent registry: register, update (version bump), deregister, list, filter by capability.

The ``agents`` table is a projection of the ``agent`` event streams, written in
the same transaction as the events. Every spec is checked against the operator
policy (nofx.security.policy) before anything is written, and stored specs are
read back with any inline secret redacted.
"""

from __future__ import annotations

import builtins
import difflib
import os
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from nofx.data_contract import StreamType
from nofx.domain import Agent, AgentSpec, AgentStatus, NewEvent, ProviderKind, new_id, utcnow
from nofx.errors import ConcurrencyError, DuplicateAgentError, NotFoundError, UnknownCapabilityError
from nofx.security.policy import OperatorPolicy, check_provider, policy_from_settings, redact_spec
from nofx.store import EventStore, Transaction
from nofx.store.driver import run_on_cursor
from nofx.store.event_store import as_utc
from nofx.store.schema import agent_capabilities, agents

# Registry.offers on the DB-API cursor, per dialect (its parameter style)
_OFFERS_SQL = {
    dialect: "SELECT 1 FROM agent_capabilities "
    f"WHERE tenant_id = {mark} AND capability = {mark} LIMIT 1"
    for dialect, mark in (("sqlite", "?"), ("postgresql", "%s"))
}

STREAM_TYPE = StreamType.AGENT
DENY_ALL = OperatorPolicy()


def agent_stream(agent_id: str) -> str:
    return f"agent-{agent_id}"


def _row_to_agent(row: Any) -> Agent:
    return Agent(
        **redact_spec(row.spec),
        agent_id=row.agent_id,
        version=row.version,
        status=AgentStatus(row.status),
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
    )


class AgentRegistry:
    def __init__(self, store: EventStore, policy: OperatorPolicy | None = None) -> None:
        self.store = store
        self._policy = policy

    @property
    def policy(self) -> OperatorPolicy:
        """The operator policy given, else this process's (read once, on first use)."""
        if self._policy is None:
            self._policy = policy_from_settings()
        return self._policy

    def check(self, spec: AgentSpec) -> None:
        """Refuse a spec the operator policy does not allow (403) or that is malformed (422).

        Simulated agents need no policy (only the inline-secret rule), so they register
        even where no policy could be read."""
        kind = spec.provider.kind
        check_provider(
            kind.value,
            spec.provider.config,
            DENY_ALL if kind is ProviderKind.SIMULATED else self.policy,
            path=os.environ.get("PATH"),
        )

    def _write_capabilities(self, conn: Connection, agent_id: str, spec: AgentSpec) -> None:
        conn.execute(delete(agent_capabilities).where(agent_capabilities.c.agent_id == agent_id))
        conn.execute(
            insert(agent_capabilities),
            [
                {
                    "agent_id": agent_id,
                    "capability": c.name,
                    "proficiency": c.proficiency,
                    "tenant_id": spec.tenant_id,
                }
                for c in spec.capabilities
            ],
        )

    def register(self, spec: AgentSpec, *, agent_id: str | None = None) -> Agent:
        """Add an agent; a second agent with the same name in the tenant is refused."""
        self.check(spec)
        agent_id = agent_id or new_id("agt")
        now = utcnow()
        spec_json = spec.model_dump(mode="json")

        def write(tx: Transaction) -> None:
            tx.conn.execute(
                insert(agents).values(
                    agent_id=agent_id,
                    tenant_id=spec.tenant_id,
                    name=spec.name,
                    version=1,
                    status=AgentStatus.ACTIVE.value,
                    spec=spec_json,
                    created_at=now,
                    updated_at=now,
                )
            )
            self._write_capabilities(tx.conn, agent_id, spec)
            tx.append(
                agent_stream(agent_id),
                STREAM_TYPE,
                spec.tenant_id,
                [
                    NewEvent(
                        type="AgentRegistered",
                        payload={"agent_id": agent_id, "version": 1, "spec": spec_json},
                    )
                ],
                expected_version=0,
            )

        try:
            self.store.call(write)
        except (IntegrityError, ConcurrencyError) as exc:
            raise DuplicateAgentError(
                f"an agent named {spec.name!r} is already registered in tenant {spec.tenant_id!r}",
                hint="choose another name, or update the existing agent (PUT /api/v1/agents/{id})",
            ) from exc
        return self.get(agent_id)

    def update(
        self, agent_id: str, spec: AgentSpec, *, expected_version: int | None = None
    ) -> Agent:
        """Replace an agent's spec and bump its version."""
        self.check(spec)
        current = self.get(agent_id)
        if expected_version is not None and expected_version != current.version:
            raise ConcurrencyError(
                f"agent {agent_id} is at version {current.version}, not {expected_version}",
                hint="fetch the agent again and re-apply your change",
            )
        if spec.tenant_id != current.tenant_id:
            raise NotFoundError(f"agent {agent_id} does not exist in tenant {spec.tenant_id!r}")
        version = current.version + 1
        spec_json = spec.model_dump(mode="json")

        def write(tx: Transaction) -> None:
            result = tx.conn.execute(
                update(agents)
                .where(agents.c.agent_id == agent_id, agents.c.version == current.version)
                .values(name=spec.name, version=version, spec=spec_json, updated_at=utcnow())
            )
            if result.rowcount != 1:
                raise ConcurrencyError(
                    f"agent {agent_id} changed while it was being updated", hint="retry"
                )
            self._write_capabilities(tx.conn, agent_id, spec)
            tx.append(
                agent_stream(agent_id),
                STREAM_TYPE,
                spec.tenant_id,
                [
                    NewEvent(
                        type="AgentUpdated",
                        payload={"agent_id": agent_id, "version": version, "spec": spec_json},
                    )
                ],
            )

        try:
            self.store.call(write)
        except IntegrityError as exc:
            raise DuplicateAgentError(
                f"an agent named {spec.name!r} is already registered in tenant {spec.tenant_id!r}",
                hint="choose another name",
            ) from exc
        return self.get(agent_id)

    def deregister(self, agent_id: str, *, tenant_id: str | None = None) -> Agent:
        """Remove an agent from selection; its events stay, so history still names it."""
        agent = self.get(agent_id, tenant_id=tenant_id)

        def write(tx: Transaction) -> None:
            tx.conn.execute(
                delete(agent_capabilities).where(agent_capabilities.c.agent_id == agent_id)
            )
            tx.conn.execute(delete(agents).where(agents.c.agent_id == agent_id))
            tx.append(
                agent_stream(agent_id),
                STREAM_TYPE,
                agent.tenant_id,
                [NewEvent(type="AgentDeregistered", payload={"agent_id": agent_id})],
            )

        self.store.call(write)
        return agent.model_copy(update={"status": AgentStatus.DEREGISTERED})

    def get(self, agent_id: str, *, tenant_id: str | None = None) -> Agent:
        query = select(agents).where(agents.c.agent_id == agent_id)
        if tenant_id is not None:
            query = query.where(agents.c.tenant_id == tenant_id)
        with self.store.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFoundError(
                f"no agent with id {agent_id!r}", hint="list agents with `nofx agents list`"
            )
        return _row_to_agent(row)

    def list(
        self,
        *,
        tenant_id: str | None = None,
        capability: str | None = None,
        min_proficiency: int = 1,
        limit: int | None = None,
        after_id: str | None = None,
    ) -> builtins.list[Agent]:
        query = select(agents)
        if tenant_id is not None:
            query = query.where(agents.c.tenant_id == tenant_id)
        if capability is not None:
            covered = select(agent_capabilities.c.agent_id).where(
                agent_capabilities.c.capability == capability,
                agent_capabilities.c.proficiency >= min_proficiency,
            )
            query = query.where(agents.c.agent_id.in_(covered))
        if after_id is not None:
            query = query.where(agents.c.agent_id > after_id)
        query = query.order_by(agents.c.agent_id)
        if limit is not None:
            query = query.limit(limit)
        with self.store.engine.connect() as conn:
            return [_row_to_agent(r) for r in conn.execute(query)]

    def capabilities(
        self, tenant_id: str | None = None, *, conn: Connection | None = None
    ) -> set[str]:
        """Capability names offered in the tenant. Code running inside the store's writer
        passes its transaction's ``conn``: taking a pooled connection there while request
        threads hold the pool and wait for the write lock would deadlock."""
        query = select(agent_capabilities.c.capability).distinct()
        if tenant_id is not None:
            query = query.where(agent_capabilities.c.tenant_id == tenant_id)
        if conn is not None:
            return {r[0] for r in conn.execute(query)}
        with self.store.engine.connect() as own:
            return {r[0] for r in own.execute(query)}

    @staticmethod
    def offers(conn: Connection, tenant_id: str, capability: str) -> bool:
        """Whether an agent of the tenant offers ``capability``: one row found through the
        (tenant_id, capability) index, on the DB-API cursor of ``conn``'s transaction.
        Every submission asks this on the store's writer; reading the tenant's whole set of
        capabilities through Core there was a fifth of the writer's CPU per session."""
        sql = _OFFERS_SQL.get(conn.dialect.name)
        if sql is None:
            query = (
                select(agent_capabilities.c.capability)
                .where(
                    agent_capabilities.c.tenant_id == tenant_id,
                    agent_capabilities.c.capability == capability,
                )
                .limit(1)
            )
            return conn.execute(query).first() is not None
        return bool(run_on_cursor(conn, sql, (tenant_id, capability)).fetchall())

    def require_capability(
        self, capability: str, tenant_id: str, *, conn: Connection | None = None
    ) -> None:
        """Refuse work nobody can do, and suggest the nearest capability names."""
        known = self.capabilities(tenant_id, conn=conn)
        if capability in known:
            return
        close = difflib.get_close_matches(capability, sorted(known), n=3)
        hint = (
            f"did you mean {', '.join(close)}?"
            if close
            else f"register an agent that offers it; known: {', '.join(sorted(known)) or 'none'}"
        )
        raise UnknownCapabilityError(
            f"no registered agent in tenant {tenant_id!r} offers capability {capability!r}",
            hint=hint,
        )
