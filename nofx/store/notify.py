"""Wake idle workers when work arrives: LISTEN/NOTIFY on PostgreSQL, a timed poll elsewhere."""

from __future__ import annotations

import time

from sqlalchemy import Connection, Engine

CHANNEL = "nofx_work"


def notify_work(conn: Connection) -> None:
    """Inside a write transaction: PostgreSQL delivers the notification when it commits."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_notify('{CHANNEL}', '')")


class WorkSignal:
    """``wait(timeout)`` returns True when work was announced, False when the timeout ran out."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._listener = None
        if engine.dialect.name == "postgresql":
            import psycopg

            url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            self._listener = psycopg.connect(url, autocommit=True)
            self._listener.execute(f"LISTEN {CHANNEL}")

    @property
    def listens(self) -> bool:
        return self._listener is not None

    def wait(self, timeout: float) -> bool:
        if self._listener is None:
            time.sleep(timeout)
            return False
        return any(True for _ in self._listener.notifies(timeout=timeout, stop_after=1))

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
