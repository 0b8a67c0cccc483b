"""Hot-path reads run through the DB-API cursor (ADR 0029).

A read through SQLAlchemy Core costs 0.3-0.5 ms of CPU here (building the statement, its
cache key, a Connection, the BEGIN event, the result proxy) against 0.02 ms for the same
SELECT on a pooled DB-API connection: for the API's hot reads (one session, a page of
sessions) Core was most of the request. ``ReadStatement`` keeps the query written in Core,
compiles it once per dialect, and then runs it on a pooled connection's cursor, converting
each bound value and each column with the processor Core itself would use (SQLite's
datetime strings, JSON text), so what it returns is what ``conn.execute(query)`` returns.

A read is one SELECT: on SQLite (connections in autocommit, WAL) it sees one snapshot; on
PostgreSQL the pool's reset ends the transaction psycopg opened for it. Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Engine, Select

Processor = Callable[[Any], Any]


@dataclass(frozen=True)
class _Prepared:
    compiled: Any
    sql: str
    order: tuple[str, ...] | None  # positional parameters' names, in order (SQLite)
    binds: Mapping[str, Processor]
    # the columns' result processors, from the first run's cursor description (PostgreSQL's
    # depend on the type the server reports)
    results: list[tuple[int, Processor]] | None = None


class ReadStatement:
    """A fixed SELECT whose parameters are bound at each run (``bindparam`` names)."""

    def __init__(self, query: Select[Any], *, text: Mapping[str, Processor] | None = None) -> None:
        """``text`` replaces the conversion of the named columns where the driver hands back
        text (SQLite's JSON): e.g. a faster parser for a column whose read fields are known
        to suit it. Where the driver already converted the value (psycopg's JSON), it stays."""
        self.query = query
        self.columns = tuple(str(c.key) for c in query.selected_columns)
        self._text = dict(text or {})
        unknown = set(self._text) - set(self.columns)
        if unknown:
            raise ValueError(f"not columns of the statement: {sorted(unknown)}")
        self._prepared: dict[str, _Prepared] = {}

    def _prepare(self, engine: Engine) -> _Prepared:
        dialect = engine.dialect
        found = self._prepared.get(dialect.name)
        if found is None:
            compiled = self.query.compile(dialect=dialect)
            if "POSTCOMPILE" in compiled.string:  # expanding IN and the like: not fixed text
                raise ValueError(f"not a fixed statement: {compiled.string}")
            binds = {
                name: proc
                for name, bind in compiled.binds.items()
                if (proc := bind.type.dialect_impl(dialect).bind_processor(dialect))
            }
            order = tuple(compiled.positiontup or ()) if dialect.positional else None
            found = _Prepared(compiled, compiled.string, order, binds)
            self._prepared[dialect.name] = found
        return found

    def _results(self, engine: Engine, description: Any) -> list[tuple[int, Processor]]:
        dialect = engine.dialect
        found: list[tuple[int, Processor]] = []
        for i, c in enumerate(self.query.selected_columns):
            core = c.type.dialect_impl(dialect).result_processor(dialect, description[i][1])
            own = self._text.get(self.columns[i])
            if own is not None:
                found.append((i, _text_only(own, core)))
            elif core is not None:
                found.append((i, core))
        return found

    def rows(
        self, engine: Engine, params: Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Every row, as tuples in the order of the query's columns (``self.columns``)."""
        prepared = self._prepare(engine)
        values = prepared.compiled.construct_params(dict(params or {}))
        for name, proc in prepared.binds.items():
            if values.get(name) is not None:
                values[name] = proc(values[name])
        bound: Any = values if prepared.order is None else tuple(values[n] for n in prepared.order)
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                cursor.execute(prepared.sql, bound)
                fetched = cursor.fetchall()
                results = prepared.results
                if results is None:
                    results = self._results(engine, cursor.description)
                    self._prepared[engine.dialect.name] = replace(prepared, results=results)
            finally:
                cursor.close()
        finally:
            raw.close()  # back to the pool, which ends any transaction the read opened
        if not results:
            return [tuple(r) for r in fetched]
        out = []
        for row in fetched:
            cells = list(row)
            for i, proc in results:
                cells[i] = proc(cells[i])
            out.append(tuple(cells))
        return out

    def first(
        self, engine: Engine, params: Mapping[str, Any] | None = None
    ) -> tuple[Any, ...] | None:
        found = self.rows(engine, params)
        return found[0] if found else None


def _text_only(own: Processor, core: Processor | None) -> Processor:
    def convert(value: Any) -> Any:
        if isinstance(value, str | bytes):
            return own(value)
        return value if core is None else core(value)

    return convert
