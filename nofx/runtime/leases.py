"""Leases on sessions: a runtime claims runnable sessions, renews their leases by heartbeat
and gives them back; a dead runtime's leases expire and another runtime claims the sessions."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, or_, select, update

from nofx.domain import SessionStatus, utcnow
from nofx.runtime.config import RuntimeConfig
from nofx.store import EventStore, Transaction
from nofx.store.driver import FixedStatement, run_on_cursor
from nofx.store.schema import sessions

# a fixed statement on the DB-API cursor (nofx.store.driver): the runtime releases one lease
# per finished session, in the writer's group
RELEASE = FixedStatement(
    update(sessions)
    .where(
        sessions.c.session_id == bindparam("b_session_id"),
        sessions.c.lease_owner == bindparam("b_owner"),
    )
    .values(lease_owner=None, lease_expires_at=None)
)
RUNNABLE = (SessionStatus.REQUESTED.value, SessionStatus.RUNNING.value)


def claim_sql(dialect: str, among: int | None, excluded: int) -> str:
    """The claim as one statement: lease the ``limit`` oldest runnable sessions (requested, or
    running with a lease that is free or expired), optionally only ``among`` given ids and not
    ``excluded`` ones, and return each claimed id with its ``created_at``.

    Parameters (``claim_params``): the two runnable statuses, ``now`` (for the free-lease
    test), the ids among (SQLite: one each; PostgreSQL: one array), the excluded ids
    (likewise), ``limit``, and the new owner and expiry (first on SQLite, last on
    PostgreSQL, where the picking CTE comes first). PostgreSQL locks the picked rows ``FOR UPDATE
    SKIP LOCKED`` in a CTE (another runtime's claim in flight skips them, as the select did)
    and the update checks them again under the lock; SQLite's writer holds the database."""
    if dialect == "postgresql":
        mark, time, ids = "%s::VARCHAR(20)", "%s::TIMESTAMP WITH TIME ZONE", "%b::VARCHAR(64)[]"
        runnable = f"status IN ({mark}, {mark}) AND (lease_expires_at IS NULL OR lease_expires_at < {time})"
        where = [runnable]
        if among is not None:
            where.append(f"session_id = ANY({ids})")
        if excluded:
            where.append(f"NOT (session_id = ANY({ids}))")
        return (
            f"WITH picked AS (SELECT session_id FROM sessions WHERE {' AND '.join(where)} "
            "ORDER BY created_at LIMIT %s::INTEGER FOR UPDATE SKIP LOCKED) "
            "UPDATE sessions SET lease_owner = %s::VARCHAR(100), "
            "lease_expires_at = %s::TIMESTAMP WITH TIME ZONE FROM picked "
            "WHERE sessions.session_id = picked.session_id "
            "RETURNING sessions.session_id, sessions.created_at"
        )
    where = ["status IN (?, ?) AND (lease_expires_at IS NULL OR lease_expires_at < ?)"]
    if among is not None:
        where.append(f"session_id IN ({', '.join('?' * among)})")
    if excluded:
        where.append(f"session_id NOT IN ({', '.join('?' * excluded)})")
    return (
        "UPDATE sessions SET lease_owner = ?, lease_expires_at = ? WHERE session_id IN "
        f"(SELECT session_id FROM sessions WHERE {' AND '.join(where)} "
        "ORDER BY created_at LIMIT ?) RETURNING session_id, created_at"
    )


def claim_params(
    dialect: str,
    *,
    now: Any,
    expires: Any,
    owner: str,
    limit: int,
    among: list[str] | None,
    excluded: list[str],
) -> tuple[Any, ...]:
    """``claim_sql``'s parameters, in its order (times already converted for the driver)."""
    lists: list[Any] = []
    if dialect == "postgresql":
        if among is not None:
            lists.append(list(among))
        if excluded:
            lists.append(list(excluded))
        return (*RUNNABLE, now, *lists, limit, owner, expires)
    return (owner, expires, *RUNNABLE, now, *(among or ()), *excluded, limit)


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
        expires = now + timedelta(seconds=self.config.lease_s)
        tx.run_later()  # the group's queued projection writes come before this read
        dialect = tx.conn.dialect
        if dialect.name not in ("sqlite", "postgresql") or not dialect.update_returning:
            # another database, or a SQLite older than 3.35 (no RETURNING)
            return self._claim_core(tx, limit, session_ids, exclude, now, expires)
        if session_ids == []:
            return []  # what an empty IN finds, without a statement
        excluded = sorted(exclude or ())
        convert = _time_processor(dialect)
        sql = claim_sql(
            dialect.name, None if session_ids is None else len(session_ids), len(excluded)
        )
        params = claim_params(
            dialect.name,
            now=convert(now),
            expires=convert(expires),
            owner=self.config.worker_id,
            limit=limit,
            among=session_ids,
            excluded=excluded,
        )
        rows = run_on_cursor(tx.conn, sql, params).fetchall()
        # RETURNING's order is not the subquery's: the oldest first, as the select gave them
        return [row[0] for row in sorted(rows, key=lambda row: row[1])]

    def _claim_core(
        self,
        tx: Transaction,
        limit: int,
        session_ids: list[str] | None,
        exclude: set[str] | None,
        now: datetime,
        expires: datetime,
    ) -> list[str]:
        """The claim in Core, for a dialect ``claim_sql`` is not written for."""
        free = or_(sessions.c.lease_expires_at.is_(None), sessions.c.lease_expires_at < now)
        runnable = and_(sessions.c.status.in_(RUNNABLE), free)
        query = select(sessions.c.session_id).where(runnable)
        if session_ids is not None:
            query = query.where(sessions.c.session_id.in_(session_ids))
        if exclude:
            query = query.where(sessions.c.session_id.not_in(sorted(exclude)))
        query = query.order_by(sessions.c.created_at).limit(limit).with_for_update(skip_locked=True)
        ids = [r[0] for r in tx.conn.execute(query)]
        if not ids:
            return []
        tx.conn.execute(
            update(sessions)
            .where(sessions.c.session_id.in_(ids), runnable)
            .values(lease_owner=self.config.worker_id, lease_expires_at=expires)
        )
        return ids

    def _renew(self, tx: Transaction, session_ids: list[str]) -> None:
        expires = utcnow() + timedelta(seconds=self.config.lease_s)
        dialect = tx.conn.dialect
        owner = self.config.worker_id
        if dialect.name == "postgresql":
            run_on_cursor(
                tx.conn,
                "UPDATE sessions SET lease_expires_at = %s::TIMESTAMP WITH TIME ZONE "
                "WHERE session_id = ANY(%b::VARCHAR(64)[]) AND lease_owner = %s::VARCHAR(100)",
                (expires, list(session_ids), owner),
            )
            return
        if dialect.name == "sqlite":
            marks = ", ".join("?" * len(session_ids))
            run_on_cursor(
                tx.conn,
                "UPDATE sessions SET lease_expires_at = ? "
                f"WHERE session_id IN ({marks}) AND lease_owner = ?",
                (_time_processor(dialect)(expires), *session_ids, owner),
            )
            return
        tx.conn.execute(
            update(sessions)
            .where(sessions.c.session_id.in_(session_ids), sessions.c.lease_owner == owner)
            .values(lease_expires_at=expires)
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
            self.store.call(lambda tx: RELEASE.execute(tx.conn, [params]))
            return
        RELEASE.execute(conn, [params])

    async def release_async(self, session_id: str) -> None:
        params = {"b_session_id": session_id, "b_owner": self.config.worker_id}
        await self.store.call_async(lambda tx: RELEASE.execute(tx.conn, [params]))


def _time_processor(dialect: Any) -> Any:
    """How Core binds ``lease_expires_at`` on ``dialect`` (SQLite: its text format)."""
    proc = sessions.c.lease_expires_at.type.dialect_impl(dialect).bind_processor(dialect)
    return proc if proc is not None else _same


def _same(value: Any) -> Any:
    return value
