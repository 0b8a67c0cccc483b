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
_SQLITE_VARIABLES = 32_000  # SQLite >= 3.32 allows 32,766 bound variables a statement


def dumps(value: Any) -> str:
    """JSON text for a column: orjson when it can, the standard library when it cannot
    (e.g. integers beyond 64 bits), so nothing storable before is refused now."""
    try:
        return orjson.dumps(value, option=_ORJSON_OPTIONS).decode()
    except TypeError:
        return json.dumps(value)


def loads(text: str | bytes) -> Any:
    """Parse a JSON column; rows written by ``json.dumps`` with NaN parse too."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


class DriverStatement:
    """``INSERT INTO table (columns)`` or ``UPDATE table SET columns WHERE key = ?``,
    executed many rows at a time from dicts holding those columns (``key`` included)."""

    def __init__(self, table: Table, columns: Sequence[str], *, key: str | None = None) -> None:
        self.table = table
        self.columns = tuple(columns)
        self.key = key
        self._order = self.columns + ((key,) if key else ())
        self._values = operator.itemgetter(*self._order)
        self._prepared: dict[str, list[tuple[int, Any]]] = {}
        self._statements: dict[int, str] = {}
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

    def _processors(self, conn: Connection) -> list[tuple[int, Any]]:
        dialect = conn.dialect
        found = self._prepared.get(dialect.name)
        if found is None:
            found = self._prepared[dialect.name] = [
                (i, proc)
                for i, c in enumerate(self._order)
                if (proc := self.table.c[c].type.dialect_impl(dialect).bind_processor(dialect))
            ]
        return found

    def _sql(self, rows: int) -> str:
        """One statement for ``rows`` rows: SQLite releases the GIL on every step of a
        statement, so executemany's one step per row made the writer thread wait for the
        event loop's GIL once per row; a multi-row statement waits once."""
        sql = self._statements.get(rows)
        if sql is None:
            name = self.table.name
            one = "(" + ", ".join("?" for _ in self._order) + ")"
            values = ", ".join(one for _ in range(rows))
            if self.key is None:
                sql = f"INSERT INTO {name} ({', '.join(self.columns)}) VALUES {values}"
            else:
                sets = ", ".join(f"{c} = v.column{i}" for i, c in enumerate(self.columns, 1))
                sql = (
                    f"UPDATE {name} SET {sets} FROM (VALUES {values}) AS v "
                    f"WHERE {name}.{self.key} = v.column{len(self._order)}"
                )
            if len(self._statements) < 64:
                self._statements[rows] = sql
        return sql

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
        if self.key is not None:
            # an UPDATE ... FROM applies one of several matches: keep each key's last row
            rows = list({row[self.key]: row for row in rows}.values())
        processors = self._processors(conn)
        values = self._values
        width = len(self._order)
        per_statement = max(1, _SQLITE_VARIABLES // width)
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            params: list[Any] = []
            for row in chunk:
                found = values(row)
                if width == 1:
                    found = (found,)
                if processors:
                    found = list(found)
                    for i, proc in processors:
                        found[i] = proc(found[i])
                params.extend(found)
            conn.exec_driver_sql(self._sql(len(chunk)), tuple(params))
