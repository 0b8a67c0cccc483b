"""Running a tenant's metric SQL where it can only see that tenant's rows.

Tenant SQL is untrusted, so it is not run against the warehouse at all. Each run builds a
throw-away in-memory DuckDB holding copies of only the tenant's rows of the published marts
the query names (at most ``MAX_SOURCE_ROWS`` each), then switches off every file and network
access and locks the configuration before the tenant's text is parsed. Static checks
(one SELECT statement, bounded length, no file or extension functions) refuse bad SQL at
definition time with a clear message; the sandbox is what makes it safe even if a check
missed something. Runs are bounded in time (interrupted), memory, threads and result rows.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import duckdb

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
# Refused up front with a clear message (the sandbox would refuse them anyway).
FORBIDDEN = re.compile(
    r"\b(attach|detach|copy|pragma|install|load|export|import|read_\w+|glob|"
    r"parquet_\w+|iceberg_\w+|delta_scan|sqlite_\w+|postgres_\w+|httpfs|query_table|"
    r"duckdb_secrets|current_setting|set|reset|call|checkpoint)\b",
    re.IGNORECASE,
)
SANDBOX_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "threads": 1,
    "memory_limit": MEMORY_LIMIT,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
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


def _tenant_copy(
    sandbox: duckdb.DuckDBPyConnection,
    source: WarehouseConnection,
    schema: str,
    tenant_id: str,
    names: list[str],
) -> None:
    """Copy the tenant's rows of each named mart into the sandbox (fixed SQL, tenant as a
    parameter); a mart not published yet becomes no table."""
    published = {
        r[0]
        for r in source.execute(
            "select table_name from information_schema.tables where table_schema = ?",
            [schema],
        ).fetchall()
    }
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
        sandbox.register("tenant_rows", rows)
        sandbox.execute(f'create table "{name}" as select * from tenant_rows')
        sandbox.unregister("tenant_rows")


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
    (a read-only warehouse connection) is read with fixed SQL, never with the tenant's."""
    text = check_metric_sql(sql)
    names = [m for m in ALLOWED_MARTS if re.search(rf"\b{m}\b", text, re.IGNORECASE)]
    with duckdb.connect(":memory:", config=SANDBOX_CONFIG) as sandbox:
        _tenant_copy(sandbox, source, schema, tenant_id, names)
        _locked(sandbox)
        timer = threading.Timer(timeout_s, sandbox.interrupt)
        timer.start()
        try:
            cursor = sandbox.execute(text)
            columns = [d[0].lower() for d in cursor.description or []]
            rows = cursor.fetchmany(MAX_RESULT_ROWS + 1)
        except duckdb.InterruptException as exc:
            raise MetricQueryError(f"the metric ran over its {timeout_s:g} s limit") from exc
        except duckdb.Error as exc:
            raise MetricQueryError(f"the metric failed: {str(exc).splitlines()[0]}") from exc
        finally:
            timer.cancel()
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
