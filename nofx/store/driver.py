"""Hot-path statements run through the DB-API cursor, and JSON through orjson.

The writer's profile (ADR 0015) showed SQLAlchemy turning each row's dict into bound
parameters at ~70 us a row, and ``json.dumps`` at ~40 us a payload: more than SQLite's
own insert. For the few fixed statements of the hot path (events, the sessions
projection, lease release) this module renders the SQL once per dialect and runs
``executemany`` with plain tuples, converting each column with the same bind processor
SQLAlchemy would use, so what is stored is the same as through Core.

Every statement here runs on the connection's DB-API cursor (``run_on_cursor``), not
through ``exec_driver_sql``: on the writer thread, SQLAlchemy's execution context around a
fixed statement (events, cursor-result set-up, the result proxy) cost ~0.1 ms, more than
SQLite's own insert (ADR 0031). Errors are wrapped as Core wraps them (``IntegrityError``
stays ``sqlalchemy.exc.IntegrityError``), so callers see no difference.

On PostgreSQL (ADR 0016, "The PostgreSQL commit group") Core's executemany becomes one
multi-row ``INSERT ... VALUES`` whose text differs with every group size, so psycopg parses
each anew and the server never reuses a plan. Here the statement text is fixed (the same
casts Core renders), so psycopg prepares it after a few uses, and ``executemany`` sends
every row in one pipeline: one round trip per statement and group. Other dialects run
through Core.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import JSON, Connection, DateTime, Table, bindparam, insert, update
from sqlalchemy.exc import DBAPIError

_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS
_NOTHING = object()


def dumps(value: Any) -> str:
    """JSON text for a column: orjson when it can, the standard library when it cannot
    (e.g. integers beyond 64 bits), so nothing storable before is refused now."""
    try:
        return orjson.dumps(value, option=_ORJSON_OPTIONS).decode()
    except TypeError:
        return json.dumps(value)


def run_on_cursor(
    conn: Connection, sql: str, params: Any = (), *, many: bool = False, autobegin: bool = True
) -> Any:
    """Execute ``sql`` on ``conn``'s DB-API cursor, inside its current transaction, and
    return the cursor (for ``fetchall``). A driver error is raised as Core raises it
    (``sqlalchemy.exc.IntegrityError`` for a unique key, ``OperationalError`` for a lock);
    a lost connection is invalidated as Core would, so the pool never hands it out again.
    Outside a transaction one is begun first, as Core's autobegin does (``autobegin=False``
    for the BEGIN itself, run from the connection's ``begin`` event)."""
    dialect = conn.dialect
    if autobegin and not conn.in_transaction():
        conn.begin()  # what Core's autobegin does before a statement
    pooled = conn.connection
    cursor = pooled.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        if many:
            cursor.executemany(sql, params)
        else:
            cursor.execute(sql, params)
    except dialect.loaded_dbapi.Error as exc:
        gone = dialect.is_disconnect(exc, pooled.dbapi_connection, cursor)
        if gone:
            conn.invalidate(exc)
        raise DBAPIError.instance(
            sql,
            params,
            exc,
            dialect.loaded_dbapi.Error,
            connection_invalidated=gone,
            dialect=dialect,
            ismulti=many,
        ) from exc
    return cursor


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
                (i, json_text(proc, dialect) if is_json(self.table, c) else proc)
                for i, c in enumerate(self._order)
                if (proc := self.table.c[c].type.dialect_impl(dialect).bind_processor(dialect))
            ]
            found = self._prepared[dialect.name] = (sql, processors)
        return found

    def execute(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> Any:
        """Write ``rows``; on SQLite, the DB-API cursor that wrote them (else None)."""
        if not rows:
            return None
        if conn.dialect.name == "postgresql":
            self._execute_pg(conn, rows)
            return None
        if conn.dialect.name != "sqlite":
            names = self.columns if self.key is None else (*self.columns, f"b_{self.key}")
            conn.execute(
                self.core,
                [dict(zip(names, (r[c] for c in self._order), strict=True)) for r in rows],
            )
            return None
        sql, processors = self._prepare(conn)
        values = self._values
        if len(self._order) == 1:
            table: list[Any] = [[values(row) for row in rows]]
        else:
            table = list(zip(*map(values, rows), strict=True))  # one tuple per column
        # column by column: rows of one group share objects (the group's timestamp in every
        # row), so a value that is the very object of the row before reuses its converted
        # value: a DateTime is formatted once per group, not once per row (~4 us a row)
        for i, proc in processors:
            converted: list[Any] = []
            last: Any = _NOTHING
            made: Any = None
            for value in table[i]:
                if value is not last:
                    last, made = value, proc(value)
                converted.append(made)
            table[i] = converted
        params = list(zip(*table, strict=True))
        if len(params) == 1:  # one row: ``execute``, which sets the cursor's ``lastrowid``
            return run_on_cursor(conn, sql, params[0])
        return run_on_cursor(conn, sql, params, many=True)

    # -- PostgreSQL ---------------------------------------------------------------------
    def _prepare_pg(self, conn: Connection) -> tuple[str, list[int]]:
        found = self._prepared.get("postgresql")
        if found is None:
            dialect = conn.dialect
            marks = [pg_placeholder(self.table, c, dialect) for c in self._order]
            name = self.table.name
            if self.key is None:
                sql = f"INSERT INTO {name} ({', '.join(self.columns)}) VALUES ({', '.join(marks)})"
            else:
                sets = ", ".join(f"{c} = {m}" for c, m in zip(self.columns, marks, strict=False))
                sql = f"UPDATE {name} SET {sets} WHERE {self.key} = {marks[-1]}"
            json_at = [i for i, c in enumerate(self._order) if is_json(self.table, c)]
            found = self._prepared["postgresql"] = (sql, json_at)  # type: ignore[assignment]
        return found  # type: ignore[return-value]

    def _execute_pg(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        sql, json_at = self._prepare_pg(conn)
        values = self._values
        params: list[Any] = []
        for row in rows:
            found = values(row)
            found = list(found) if isinstance(found, tuple) else [found]
            for i in json_at:
                found[i] = dumps(found[i])
            params.append(tuple(found))
        run_on_cursor(conn, sql, params, many=True)


class FixedStatement:
    """A Core DML statement of fixed text (no expanding ``IN``), compiled once per dialect and
    executed many rows at a time on the DB-API cursor, each bound value converted by the
    processor Core would use; a parameter a row leaves out takes the statement's own value
    (``.values(lease_owner=None)``), as in Core. Rows are dicts keyed by bind names."""

    def __init__(self, core: Any) -> None:
        self.core = core
        self._prepared: dict[str, tuple[str, tuple[str, ...], dict[str, Any], dict[str, Any]]] = {}

    def __repr__(self) -> str:
        return f"FixedStatement({self.core})"

    def _prepare(self, dialect: Any) -> tuple[str, tuple[str, ...], dict[str, Any], dict[str, Any]]:
        found = self._prepared.get(dialect.name)
        if found is None:
            compiled = self.core.compile(dialect=dialect)
            if "POSTCOMPILE" in compiled.string:
                raise ValueError(f"not a fixed statement: {compiled.string}")
            names = (
                tuple(compiled.positiontup or ()) if dialect.positional else tuple(compiled.binds)
            )
            processors = {
                name: proc
                for name, bind in compiled.binds.items()
                if (proc := bind.type.dialect_impl(dialect).bind_processor(dialect))
            }
            defaults = {
                name: bind.effective_value
                for name, bind in compiled.binds.items()
                if not bind.required
            }
            found = self._prepared[dialect.name] = (compiled.string, names, processors, defaults)
        return found

    def execute(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        dialect = conn.dialect
        if dialect.name not in ("sqlite", "postgresql"):
            conn.execute(self.core, list(rows))
            return
        sql, names, processors, defaults = self._prepare(dialect)
        converted: list[list[Any]] = []
        for row in rows:
            values = []
            for name in names:
                value = row[name] if name in row else defaults[name]
                proc = processors.get(name)
                values.append(value if proc is None else proc(value))
            converted.append(values)
        if dialect.positional:
            params: list[Any] = [tuple(v) for v in converted]
        else:
            params = [dict(zip(names, v, strict=True)) for v in converted]
        run_on_cursor(conn, sql, params, many=True)


def json_text(core: Any, dialect: Any) -> Any:
    """Core's JSON bind processor, with a dict going straight to ``dumps`` when that is the
    dialect's serializer (every engine of ``make_engine``): Core's wrapper only looks for
    its NULL markers, which a dict is not, and cost as much as orjson itself (~1.5 us a value,
    two values a bus message). Anything else still goes through Core's processor."""
    if getattr(dialect, "_json_serializer", None) is not dumps:
        return core

    def process(value: Any) -> Any:
        return dumps(value) if type(value) is dict else core(value)

    return process


def is_json(table: Table, column: str) -> bool:
    """A JSON column whose None is stored as JSON ``null`` (Core's default), like any value."""
    kind = table.c[column].type
    if isinstance(kind, JSON) and kind.none_as_null:  # pragma: no cover - none in the schema
        raise ValueError(f"{table.name}.{column}: none_as_null JSON is not supported here")
    return isinstance(kind, JSON)


def pg_placeholder(table: Table, column: str, dialect: Any, *, array: bool = False) -> str:
    """``%s`` with the cast SQLAlchemy renders for the column on psycopg (``%s::VARCHAR``),
    so the server types the value as Core would have it typed."""
    impl = table.c[column].type.dialect_impl(dialect)
    if array:  # binary: psycopg's text array format escapes each element with a regex
        return f"%b::{table.c[column].type.compile(dialect)}[]"
    if not getattr(impl, "render_bind_cast", False):
        return "%s"
    return f"%s::{table.c[column].type.compile(dialect)}"


class PgInsertReturning:
    """``INSERT INTO table (columns) SELECT ... FROM unnest(one array per column)
    WITH ORDINALITY ORDER BY ordinality RETURNING key``: a group's rows in one fixed
    statement (prepared by psycopg after a few groups) and one round trip.

    ``ORDER BY`` the ordinality makes the server draw ``key`` from its sequence in the rows'
    order (what SQLAlchemy's ``sort_by_parameter_order`` relies on for a SERIAL key), so the
    keys sorted ascending are the rows' keys in order, however other sessions interleave."""

    def __init__(self, table: Table, columns: Sequence[str], returning: str) -> None:
        self.table = table
        self.columns = tuple(columns)
        self.returning = returning
        self._json = [is_json(table, c) for c in self.columns]
        self._times = {c for c in self.columns if isinstance(table.c[c].type, DateTime)}
        self._sql: str | None = None

    def sql(self, dialect: Any) -> str:
        if self._sql is None:
            arrays = []
            for c, js in zip(self.columns, self._json, strict=True):
                # JSON travels as text (as Core sends it) and is cast once on the server
                arrays.append(
                    "%b::text[]" if js else pg_placeholder(self.table, c, dialect, array=True)
                )
            names = ", ".join(self.columns)
            picks = ", ".join(
                f"u.{c}::JSON" if js else f"u.{c}"
                for c, js in zip(self.columns, self._json, strict=True)
            )
            self._sql = (
                f"INSERT INTO {self.table.name} ({names}) SELECT {picks} "
                f"FROM unnest({', '.join(arrays)}) WITH ORDINALITY AS u({names}, ord) "
                f"ORDER BY u.ord RETURNING {self.returning}"
            )
        return self._sql

    def execute(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> list[int]:
        """Insert ``rows``; their keys, in the rows' order."""
        if not rows:
            return []
        arrays: list[list[Any]] = []
        for c, js in zip(self.columns, self._json, strict=True):
            column = [r[c] for r in rows]
            if js:
                column = [dumps(v) for v in column]
            elif c in self._times and any(v.tzinfo is None for v in column):
                # an array has one element type: naive times go as text, which the server
                # reads in its session time zone, as it reads a naive timestamp bound by Core
                column = [v.isoformat() for v in column]
            arrays.append(column)
        cursor = run_on_cursor(conn, self.sql(conn.dialect), tuple(arrays))
        keys: list[Any] = [row[0] for row in cursor.fetchall()]
        returned = sorted(int(k) for k in keys)
        if len(returned) != len(rows):  # pragma: no cover - the server inserts every row or fails
            raise RuntimeError(f"inserted {len(rows)} rows, {len(returned)} keys came back")
        return returned
