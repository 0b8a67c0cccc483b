"""Leases on sessions: a runtime claims runnable sessions, renews their leases by heartbeat
and gives them back; a dead runtime's leases expire and another runtime claims the sessions."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Connection, and_, bindparam, or_, select, update

from nofx.domain import SessionStatus, utcnow
from nofx.runtime.config import RuntimeConfig
from nofx.store import EventStore, Transaction
from nofx.store.schema import sessions

RELEASE = (
    update(sessions)
    .where(
        sessions.c.session_id == bindparam("b_session_id"),
        sessions.c.lease_owner == bindparam("b_owner"),
    )
    .values(lease_owner=None, lease_expires_at=None)
)


class Leases:
    """The lease half of the runtime (mixed into ``Engine``)."""

    store: EventStore
    config: RuntimeConfig

    def claim(
        self, limit: int, session_ids: list[str] | None = None, exclude: set[str] | None = None
    ) -> list[str]:
        """Lease up to ``limit`` runnable sessions (requested, or running with an expired lease)."""
        result: list[str] = self.store.call(lambda tx: self._claim(tx, limit, session_ids, exclude))
        return result

    async def claim_async(
        self, limit: int, session_ids: list[str] | None = None, exclude: set[str] | None = None
    ) -> list[str]:
        """``claim`` through the writer, without blocking the event loop."""
        result: list[str] = await self.store.call_async(
            lambda tx: self._claim(tx, limit, session_ids, exclude)
        )
        return result

    def _claim(
        self,
        tx: Transaction,
        limit: int,
        session_ids: list[str] | None,
        exclude: set[str] | None,
    ) -> list[str]:
        now = utcnow()
        free = or_(sessions.c.lease_expires_at.is_(None), sessions.c.lease_expires_at < now)
        runnable = and_(
            sessions.c.status.in_([SessionStatus.REQUESTED.value, SessionStatus.RUNNING.value]),
            free,
        )
        query = select(sessions.c.session_id).where(runnable)
        if session_ids is not None:
            query = query.where(sessions.c.session_id.in_(session_ids))
        if exclude:
            query = query.where(sessions.c.session_id.not_in(sorted(exclude)))
        query = query.order_by(sessions.c.created_at).limit(limit).with_for_update(skip_locked=True)
        tx.run_later()  # the group's queued projection writes come before this read
        ids = [r[0] for r in tx.conn.execute(query)]
        if not ids:
            return []
        tx.conn.execute(
            update(sessions)
            .where(sessions.c.session_id.in_(ids), runnable)
            .values(
                lease_owner=self.config.worker_id,
                lease_expires_at=now + timedelta(seconds=self.config.lease_s),
            )
        )
        return ids

    def _renew(self, tx: Transaction, session_ids: list[str]) -> None:
        tx.conn.execute(
            update(sessions)
            .where(
                sessions.c.session_id.in_(session_ids),
                sessions.c.lease_owner == self.config.worker_id,
            )
            .values(lease_expires_at=utcnow() + timedelta(seconds=self.config.lease_s))
        )

    def renew_leases(self, session_ids: list[str]) -> None:
        if session_ids:
            self.store.call(lambda tx: self._renew(tx, session_ids))

    async def renew_leases_async(self, session_ids: list[str]) -> None:
        if session_ids:
            await self.store.call_async(lambda tx: self._renew(tx, session_ids))

    def release(self, session_id: str, *, conn: Connection | None = None) -> None:
        """Give a session's lease back (inside ``conn``'s transaction when given)."""
        params = {"b_session_id": session_id, "b_owner": self.config.worker_id}
        if conn is None:
            self.store.call(lambda tx: tx.conn.execute(RELEASE, params))
            return
        conn.execute(RELEASE, params)

    async def release_async(self, session_id: str) -> None:
        params = {"b_session_id": session_id, "b_owner": self.config.worker_id}
        await self.store.call_async(lambda tx: tx.conn.execute(RELEASE, params))
