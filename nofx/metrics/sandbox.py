"""Running a tenant's metric SQL where it can only see that tenant's rows.

Tenant SQL is untrusted, so it is not run against the warehouse at all. Each run builds a
throw-away in-memory DuckDB holding copies of only the tenant's rows of the published marts
the query names (at most ``MAX_SOURCE_ROWS`` each), then switches off every file and network
access and locks the configuration before the tenant's text is parsed. Static checks
(one SELECT statement, bounded length, no file or extension functions) refuse bad SQL at
definition time with a clear message; the sandbox is what makes it safe even if a check
missed something. Runs are bounded in time (interrupted), memory, threads and result rows.

The sandbox runs in a child process with a kernel memory cap and is killed past its time:
DuckDB's memory_limit and interrupt bound queries, not single function calls, and one
``repeat('x', 2000000000)`` took 4 GB and 22 s of the caller's process past both.
"""

from __future__ import annotations

import contextlib
import decimal
import math
import multiprocessing
import os
import re
import resource
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from nofx.data_contract import TENANT_SCOPED_MARTS
from nofx.errors import ValidationError

if TYPE_CHECKING:
    from nofx.warehouse import WarehouseConnection

# The published marts a metric may read: every one has a tenant_id column.
ALLOWED_MARTS = tuple(m.value for m in TENANT_SCOPED_MARTS)
MAX_SQL_CHARS = 4000
MAX_SOURCE_ROWS = 200_000
MAX_RESULT_ROWS = 500
TIMEOUT_S = 5.0
MEMORY_LIMIT = "256MB"
# how much the tenant's query may grow the sandbox process (beyond the interpreter, DuckDB
# and the tenant's rows), and how long the process may take to start and load the rows
# before the query's own time limit counts
QUERY_MEMORY_BYTES = 2 * 1024**3
STARTUP_GRACE_S = 10.0
MEMORY_MESSAGE = "the metric's process stopped: it used more memory or CPU than a metric may"
# Refused up front with a clear message (the sandbox would refuse them anyway). query() and
# json_execute_serialized_sql() run SQL assembled at run time, past this list.
FORBIDDEN = re.compile(
    r"\b(attach|detach|copy|pragma|install|load|export|import|read_\w+|glob|"
    r"parquet_\w+|iceberg_\w+|delta_scan|sqlite_\w+|postgres_\w+|httpfs|query_table|"
    r"duckdb_secrets|duckdb_settings|current_setting|set|reset|call|checkpoint|"
    r"query|json_execute_serialized_sql)\b",
    re.IGNORECASE,
)
SANDBOX_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "threads": 1,
    "memory_limit": MEMORY_LIMIT,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    # no temp directory: DuckDB always lets queries read its temp directory (by default
    # .tmp under the working directory, shared with every in-memory database there), even
    # with external access off; and without one nothing spills to disk
    "temp_directory": "",
}


class MetricQueryError(ValidationError):
    """The metric's SQL was refused or failed; the message says why."""


@dataclass(frozen=True)
class MetricValue:
    subject: str
    value: float


def _locked(conn: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    conn.execute("SET enable_external_access = false")
    conn.execute("SET lock_configuration = true")
    return conn


def check_metric_sql(sql: str) -> str:
    """The SQL if it is one read-only SELECT over the allowed marts; else MetricQueryError."""
    text = sql.strip().rstrip(";").strip()
    if not text:
        raise MetricQueryError("the metric's SQL is empty")
    if len(text) > MAX_SQL_CHARS:
        raise MetricQueryError(f"the metric's SQL is limited to {MAX_SQL_CHARS} characters")
    if match := FORBIDDEN.search(text):
        raise MetricQueryError(
            f"{match.group(0)!r} is not allowed in a metric",
            hint="a metric is one SELECT over the published marts: " + ", ".join(ALLOWED_MARTS),
        )
    with _locked(duckdb.connect(":memory:", config=SANDBOX_CONFIG)) as conn:
        try:
            statements = conn.extract_statements(text)
        except duckdb.Error as exc:
            raise MetricQueryError(f"the metric's SQL does not parse: {exc}") from exc
    if len(statements) != 1:
        raise MetricQueryError("a metric is exactly one statement", hint="remove the ';'")
    if statements[0].type != duckdb.StatementType.SELECT:
        raise MetricQueryError(
            f"a metric is a SELECT, not {statements[0].type.name}",
            hint="metrics only read the marts",
        )
    if not any(re.search(rf"\b{m}\b", text, re.IGNORECASE) for m in ALLOWED_MARTS):
        raise MetricQueryError(
            "the metric reads none of the published marts",
            hint="select from one of " + ", ".join(ALLOWED_MARTS),
        )
    return text


def _tenant_rows(
    source: WarehouseConnection, schema: str, tenant_id: str, names: list[str]
) -> dict[str, pa.Table]:
    """The tenant's rows of each named mart (fixed SQL, tenant as a parameter), read here in
    the caller's process; a mart not published yet is left out (no table in the sandbox)."""
    published = {
        r[0]
        for r in source.execute(
            "select table_name from information_schema.tables where table_schema = ?",
            [schema],
        ).fetchall()
    }
    tables = {}
    for name in names:
        if name not in published:
            continue
        rows = source.sql(
            f'select * from "{schema}"."{name}" where tenant_id = ? limit {MAX_SOURCE_ROWS + 1}',
            params=[tenant_id],
        ).to_arrow_table()
        if rows.num_rows > MAX_SOURCE_ROWS:
            raise MetricQueryError(
                f"{name} has over {MAX_SOURCE_ROWS} of your rows: too big for a metric",
                hint="ask the operator for a pre-aggregated mart",
            )
        tables[name] = rows
    return tables


def _address_space_bytes() -> int:
    """This process's current virtual memory size."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * resource.getpagesize()


def _limit_process(timeout_s: float) -> None:
    """Caps for the sandbox's own process, set once the tenant's rows are loaded (Arrow's
    allocator crashes rather than fails when the cap hits it): DuckDB's memory_limit does
    not cover every allocation (``repeat('x', 2000000000)`` took 4 GB past a 256 MB
    limit), nor does its interrupt stop a single long function call, so the kernel bounds
    both: the query may grow the process by QUERY_MEMORY_BYTES and use its time limit's
    CPU plus two seconds."""
    room = _address_space_bytes() + QUERY_MEMORY_BYTES
    resource.setrlimit(resource.RLIMIT_AS, (room, room))
    used = resource.getrusage(resource.RUSAGE_SELF)
    cpu = math.ceil(used.ru_utime + used.ru_stime + timeout_s) + 2
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    with contextlib.suppress(OSError):
        os.nice(10)


def _small(value: Any, limit: int) -> Any:
    """A cell as the caller reads it, at most ``limit`` characters when it is not a number."""
    if value is None or isinstance(value, int | float | decimal.Decimal):
        return value
    return str(value)[:limit]


def _projected(
    columns: list[str], rows: list[tuple[Any, ...]]
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Only the value and subject columns, each cell small: what the caller is sent, so
    a metric's other columns (or a huge text value) never reach the caller's memory."""
    kept = [i for i, c in enumerate(columns) if c in ("value", "subject")]
    return (
        [columns[i] for i in kept],
        [tuple(_small(row[i], 200) for i in kept) for row in rows],
    )


def _sandboxed(text: str, tables: dict[str, pa.Table], timeout_s: float, reply: Connection) -> None:
    """Runs in a child process: the sandbox holding ``tables``, then the tenant's SELECT;
    sends back (columns, rows) of the value and subject columns, or the refusal's message."""
    try:
        with duckdb.connect(":memory:", config=SANDBOX_CONFIG) as sandbox:
            for name, table in tables.items():
                sandbox.register("tenant_rows", table)
                sandbox.execute(f'create table "{name}" as select * from tenant_rows')
                sandbox.unregister("tenant_rows")
            _locked(sandbox)
            _limit_process(timeout_s)
            timer = threading.Timer(timeout_s, sandbox.interrupt)
            timer.start()
            try:
                cursor = sandbox.execute(text)
                columns = [d[0].lower() for d in cursor.description or []]
                rows = cursor.fetchmany(MAX_RESULT_ROWS + 1)
                result: tuple[str, Any] = ("rows", _projected(columns, rows))
            except duckdb.InterruptException:
                result = ("error", f"the metric ran over its {timeout_s:g} s limit")
            except duckdb.Error as exc:
                result = ("error", f"the metric failed: {str(exc).splitlines()[0]}")
            finally:
                timer.cancel()
    except MemoryError:
        result = ("error", MEMORY_MESSAGE)
    reply.send(result)


def _context() -> multiprocessing.context.ForkServerContext | multiprocessing.context.SpawnContext:
    """A forkserver (a child in milliseconds, without the caller's threads or connections)."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")  # pragma: no cover - not on Linux


def _run_isolated(
    text: str, tables: dict[str, pa.Table], timeout_s: float
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The tenant's SELECT in a child process that is killed past its time, so no metric
    can take the caller's memory or hold it past ``timeout_s`` (plus a start-up grace)."""
    context = _context()
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_sandboxed, args=(text, tables, timeout_s, send), daemon=True)
    child.start()
    send.close()
    try:
        if not receive.poll(timeout_s + STARTUP_GRACE_S):
            raise MetricQueryError(f"the metric ran over its {timeout_s:g} s limit")
        kind, value = receive.recv()
    except EOFError as exc:  # the child died: out of memory, or over its CPU time
        raise MetricQueryError(MEMORY_MESSAGE) from exc
    finally:
        receive.close()
        if child.is_alive():
            child.kill()
        child.join(timeout=5)
        child.close()
    if kind == "error":
        raise MetricQueryError(value)
    columns, rows = value
    return columns, rows


def run_metric(
    sql: str,
    *,
    tenant_id: str,
    source: WarehouseConnection,
    schema: str = "main",
    timeout_s: float = TIMEOUT_S,
) -> list[MetricValue]:
    """The metric's values, one per row: a ``value`` column (a number) and an optional
    ``subject`` column (default "tenant"). Only the tenant's rows are visible: ``source``
    (a read-only warehouse connection) is read with fixed SQL, never with the tenant's, and
    the tenant's SQL runs in a separate, capped process (``_run_isolated``)."""
    text = check_metric_sql(sql)
    names = [m for m in ALLOWED_MARTS if re.search(rf"\b{m}\b", text, re.IGNORECASE)]
    tables = _tenant_rows(source, schema, tenant_id, names)
    columns, rows = _run_isolated(text, tables, timeout_s)
    if "value" not in columns:
        raise MetricQueryError(
            "the metric's SELECT needs a column named value",
            hint="e.g. select sum(cost_usd) as value from agent_sessions",
        )
    if len(rows) > MAX_RESULT_ROWS:
        raise MetricQueryError(f"the metric returned over {MAX_RESULT_ROWS} rows")
    v = columns.index("value")
    s = columns.index("subject") if "subject" in columns else None
    out = []
    for row in rows:
        if row[v] is None:
            continue
        try:
            value = float(row[v])
        except (TypeError, ValueError) as exc:
            raise MetricQueryError("the metric's value column must be a number") from exc
        out.append(MetricValue("tenant" if s is None else str(row[s])[:200], value))
    return out
