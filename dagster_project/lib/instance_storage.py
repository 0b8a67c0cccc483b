"""Commits the local Dagster instance's SQLite storage can afford (the embedded default).

Dagster's SQLite run and event-log storage opens a new connection for every write (SQLAlchemy's
NullPool) on databases in WAL mode. Each commit then fsyncs (``synchronous=FULL``), and each close
of the last connection checkpoints the WAL into the database, fsyncing again. A ``dbt build`` of
this project writes about 500 events: profiled, 8.7 s went to commits and 7.9 s to closes, out
of a 33 s transform stage.

``relax_local_dagster_storage`` makes two changes, for the databases under one DAGSTER_HOME and
in this process only:

- ``synchronous=NORMAL``: in WAL mode a commit no longer fsyncs. A process crash loses nothing;
  an operating-system crash may lose the last commits, but never corrupts the database. This is
  the same trade as nofx's own ``normal`` durability (docs/architecture.md).
- One idle connection is kept open per database, so a write's close is never the last one and
  does not checkpoint. SQLite still checkpoints every 1,000 pages, and once more at exit.

PostgreSQL instance storage (deploy/dagster/dagster.yaml) is not touched.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

_roots: set[str] = set()
_keepers: dict[str, sqlite3.Connection] = {}
_lock = threading.Lock()
_listening = False


def relax_local_dagster_storage(dagster_home: Path) -> None:
    """From now on, SQLite databases under ``dagster_home`` commit without fsync, and their
    connections' closes do not checkpoint (see the module's docstring)."""
    global _listening
    with _lock:
        _roots.add(str(dagster_home.resolve()))
        if not _listening:
            event.listen(Engine, "connect", _on_connect)
            _listening = True


def database_path(conn: sqlite3.Connection) -> str:
    """The file of the connection's main database ("" for an in-memory one)."""
    for _, name, path in conn.execute("pragma database_list").fetchall():
        if name == "main":
            return str(path or "")
    return ""


def _on_connect(dbapi_connection: Any, _record: Any) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return  # PostgreSQL, or another driver
    path = database_path(dbapi_connection)
    if not path or not any(path.startswith(root + "/") for root in _roots):
        return  # nofx's own store, MLflow's, a test's: their settings stand
    dbapi_connection.execute("pragma synchronous=NORMAL")
    with _lock:
        if path not in _keepers:
            _keepers[path] = sqlite3.connect(path, check_same_thread=False)
