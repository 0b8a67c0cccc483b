"""Hot-path statements run through the DB-API cursor, and JSON through orjson.

The writer's profile (ADR 0015) showed SQLAlchemy turning each row's dict into bound
parameters at ~70 us a row, and ``json.dumps`` at ~40 us a payload: more than SQLite's
own insert. For the few fixed statements of the hot path (events, the sessions
projection, lease release) this module renders the SQL once per dialect and runs
``executemany`` with plain tuples, converting each column with the same bind processor
SQLAlchemy would use, so what is stored is the same as through Core. On other
dialects than SQLite the statement runs through Core (PostgreSQL's JSON and timestamp
binding stay SQLAlchemy's).
"""

from __future__ import annotations

import json
import operator
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, Table, bindparam, insert, update

_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> str:
    """JSON text for a column: orjson when it can, the standard library when it cannot
    (e.g. integers beyond 64 bits), so nothing storable before is refused now."""
    try:
        return orjson.dumps(value, option=_ORJSON_OPTIONS).decode()
    except TypeError:
        return json.dumps(value)


class DriverStatement:
    """``INSERT INTO table (columns)`` or ``UPDATE table SET columns WHERE key = ?``,
    executed many rows at a time from dicts holding those columns (``key`` included)."""

    def __init__(self, table: Table, columns: Sequence[str], *, key: str | None = None) -> None:
        self.table = table
        self.columns = tuple(columns)
        self.key = key
        self._order = self.columns + ((key,) if key else ())
        self._values = operator.itemgetter(*self._order)
        self._prepared: dict[str, tuple[str, list[tuple[int, Any]]]] = {}
        if key is None:
            self.core: Any = insert(table)
        else:
            self.core = (
                update(table)
                .where(table.c[key] == bindparam(f"b_{key}"))
                .values({c: bindparam(c) for c in self.columns})
            )

    def __repr__(self) -> str:
        verb = "INSERT" if self.key is None else "UPDATE"
        return f"DriverStatement({verb} {self.table.name} {self.columns})"

    def _prepare(self, conn: Connection) -> tuple[str, list[tuple[int, Any]]]:
        dialect = conn.dialect
        found = self._prepared.get(dialect.name)
        if found is None:
            name = self.table.name
            if self.key is None:
                marks = ", ".join("?" for _ in self.columns)
                sql = f"INSERT INTO {name} ({', '.join(self.columns)}) VALUES ({marks})"
            else:
                sets = ", ".join(f"{c} = ?" for c in self.columns)
                sql = f"UPDATE {name} SET {sets} WHERE {self.key} = ?"
            processors = [
                (i, proc)
                for i, c in enumerate(self._order)
                if (proc := self.table.c[c].type.dialect_impl(dialect).bind_processor(dialect))
            ]
            found = self._prepared[dialect.name] = (sql, processors)
        return found

    def execute(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        if conn.dialect.name != "sqlite":
            names = self.columns if self.key is None else (*self.columns, f"b_{self.key}")
            conn.execute(
                self.core,
                [dict(zip(names, (r[c] for c in self._order), strict=True)) for r in rows],
            )
            return
        sql, processors = self._prepare(conn)
        values = self._values
        params: list[Any] = []
        for row in rows:
            found = values(row)
            if processors:
                found = list(found) if isinstance(found, tuple) else [found]
                for i, proc in processors:
                    found[i] = proc(found[i])
            params.append(tuple(found) if isinstance(found, list) else (found,))
        conn.exec_driver_sql(sql, params)
