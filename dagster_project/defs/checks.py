"""Data-quality checks: Great Expectations 1.x suites run as Dagster asset checks.

``raw_events`` gets a blocking check (schema, not-null, unique positions, value ranges), so
dbt never builds on broken input, and a warning-only check on stream types, so a new kind of
stream from the core is flagged without stopping the pipeline. ``agent_sessions`` gets a
blocking check before the model trains on it. GE has no polars engine: frames are converted
to pandas here, at the check.
"""

import logging
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd
import polars as pl

from dagster_project.defs.ingest import RAW_TABLE, ensure_raw_table
from dagster_project.resources import WarehouseResource

RAW_COLUMNS = [
    "position",
    "stream_id",
    "stream_type",
    "seq",
    "type",
    "tenant_id",
    "occurred_at",
    "idempotency_key",
    "payload",
    "loaded_at",
]
REQUIRED_RAW_COLUMNS = [c for c in RAW_COLUMNS if c != "idempotency_key"]
# Stream types the platform models; add one here when the core starts writing a new kind.
KNOWN_STREAM_TYPES = [
    "session",
    "agent",
    "workflow",
    "bus",
    "channel",
    "breaker",
    "alert",
    "audit",
    "pool",
    "api_metrics",
    "api_usage",
    "apikey",
    "alert_rule",
    "custom_metric",
]
EARLIEST_EVENT = datetime(2020, 1, 1)


@dataclass(frozen=True)
class Validation:
    """The outcome of one suite: passed, and per failed expectation a short description."""

    passed: bool
    evaluated: int
    failures: dict[str, Any]
    rows: int


KEY_COLUMNS = ["position", "stream_id", "seq"]
# rows per GE batch for the row-level expectations: bounds memory on large warehouses
CHUNK_ROWS = 200_000


def raw_events_key_suite() -> list[gxe.Expectation]:
    """Whole-table expectations on the narrow key columns: uniqueness needs every row."""
    return [
        gxe.ExpectColumnValuesToBeUnique(column="position"),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["stream_id", "seq"]),
        gxe.ExpectColumnValuesToBeBetween(column="position", min_value=1),
        gxe.ExpectColumnValuesToBeBetween(column="seq", min_value=1),
    ]


def raw_events_row_suite(now: datetime | None = None) -> list[gxe.Expectation]:
    """Row-level expectations, valid on any slice of the table."""
    latest = (now or datetime.now(UTC)).replace(tzinfo=None) + timedelta(days=1)
    expectations: list[gxe.Expectation] = [
        gxe.ExpectTableColumnsToMatchSet(column_set=RAW_COLUMNS, exact_match=True),
        gxe.ExpectColumnValuesToBeBetween(
            column="occurred_at", min_value=EARLIEST_EVENT, max_value=latest
        ),
        gxe.ExpectColumnValuesToMatchRegex(column="stream_type", regex=r"^[a-z][a-z0-9_]*$"),
        gxe.ExpectColumnValuesToMatchRegex(column="type", regex=r"^[A-Z][A-Za-z0-9]*$"),
        gxe.ExpectColumnValuesToBeJsonParseable(column="payload"),
    ]
    expectations += [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in REQUIRED_RAW_COLUMNS]
    return expectations


def merge(parts: list[Validation]) -> Validation:
    """One outcome from several batches of the same table (failures keep their batch)."""
    failures = {
        f"batch {i}/{key}": value
        for i, part in enumerate(parts)
        for key, value in part.failures.items()
    }
    return Validation(
        passed=all(p.passed for p in parts),
        evaluated=sum(p.evaluated for p in parts),
        failures=failures,
        rows=max((p.rows for p in parts), default=0),
    )


def validate_raw_events(warehouse: WarehouseResource, chunk_rows: int = CHUNK_ROWS) -> Validation:
    """Keys over the whole table, everything else batch by batch (position ranges), so a
    warehouse of millions of events is checked without holding its payloads in memory."""
    with warehouse.connect() as conn:
        ensure_raw_table(conn)
        keys = conn.sql(f"select {', '.join(KEY_COLUMNS)} from {RAW_TABLE}").pl()
    parts = [validate(keys, raw_events_key_suite(), "raw_events_keys")]
    bounds = keys["position"].sort().gather_every(chunk_rows).to_list() if keys.height else []
    for i, low in enumerate(bounds):
        high = bounds[i + 1] if i + 1 < len(bounds) else None
        where = f"position >= {int(low)}" + (f" and position < {int(high)}" if high else "")
        with warehouse.connect() as conn:
            batch = conn.sql(f"select * from {RAW_TABLE} where {where}").pl()
        parts.append(validate(batch, raw_events_row_suite(), f"raw_events_{i}"))
        del batch
    if keys.is_empty():  # still check the table's columns
        with warehouse.connect() as conn:
            parts.append(
                validate(conn.sql(f"select * from {RAW_TABLE}").pl(), raw_events_row_suite(), "raw")
            )
    return merge(parts)


def stream_types_suite() -> list[gxe.Expectation]:
    return [gxe.ExpectColumnValuesToBeInSet(column="stream_type", value_set=KNOWN_STREAM_TYPES)]


def agent_sessions_suite(agent_ids: list[str]) -> list[gxe.Expectation]:
    """One row per session, a boolean outcome, no negative cost, agents that exist."""
    return [
        gxe.ExpectColumnValuesToBeUnique(column="session_id"),
        gxe.ExpectColumnValuesToNotBeNull(column="session_id"),
        gxe.ExpectColumnValuesToNotBeNull(column="succeeded"),
        gxe.ExpectColumnValuesToBeInSet(column="succeeded", value_set=[True, False]),
        gxe.ExpectColumnValuesToBeBetween(column="cost_usd", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="attempts", min_value=0),
        # nulls are skipped by column-map expectations: a session with no agent yet is fine
        gxe.ExpectColumnValuesToBeInSet(column="agent_id", value_set=agent_ids),
    ]


def _describe(result: Any) -> str:
    config = result.expectation_config
    column = config.kwargs.get("column") or config.kwargs.get("column_list") or ""
    observed = result.result.get("unexpected_count", result.result.get("observed_value"))
    return f"{config.type}({column}): unexpected={observed}"


def validate(frame: pl.DataFrame | pd.DataFrame, expectations: list[Any], name: str) -> Validation:
    """Run expectations over a whole frame in an ephemeral GE context."""
    data = frame.to_pandas() if isinstance(frame, pl.DataFrame) else frame
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = gx.data_context.types.base.ProgressBarsConfig(
            globally=False
        )
        batch_definition = (
            context.data_sources.add_pandas(f"{name}_source")
            .add_dataframe_asset(name)
            .add_batch_definition_whole_dataframe("whole")
        )
        suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
        result = batch_definition.get_batch(batch_parameters={"dataframe": data}).validate(suite)
    failures = {
        f"{i}:{r.expectation_config.type}": _describe(r)
        for i, r in enumerate(result.results)
        if not r.success
    }
    return Validation(
        passed=bool(result.success),
        evaluated=len(result.results),
        failures=failures,
        rows=len(data),
    )


def check_result(validation: Validation, **metadata: Any) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=validation.passed,
        metadata={
            "rows": validation.rows,
            "expectations": validation.evaluated,
            "failed_expectations": len(validation.failures),
            "failures": dg.MetadataValue.json(validation.failures),
            **metadata,
        },
    )


@dg.asset_check(
    asset="raw_events",
    blocking=True,
    description="Great Expectations: columns, not-null, unique positions and (stream, seq), "
    "plausible times, JSON payloads. Blocks dbt when it fails.",
)
def raw_events_valid(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    return check_result(validate_raw_events(warehouse))


@dg.asset_check(
    asset="raw_events",
    description="Warns when events arrive from a stream type the marts do not model yet.",
)
def raw_events_known_stream_types(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connect() as conn:
        ensure_raw_table(conn)
        frame = conn.sql(f"select stream_type from {RAW_TABLE}").pl()
    validation = validate(frame, stream_types_suite(), "raw_stream_types")
    unknown = sorted(set(frame["stream_type"].unique().to_list()) - set(KNOWN_STREAM_TYPES))
    result = check_result(validation, unknown_stream_types=", ".join(unknown) or "none")
    return dg.AssetCheckResult(
        passed=result.passed, metadata=result.metadata, severity=dg.AssetCheckSeverity.WARN
    )


@dg.asset_check(
    asset="agent_sessions",
    blocking=True,
    description="Great Expectations: unique sessions, boolean outcome, cost >= 0, and every "
    "agent_id present in the agents mart. Blocks model training when it fails.",
)
def agent_sessions_valid(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connect(read_only=True) as conn:
        sessions = conn.sql("select * from agent_sessions").pl()
        agent_ids = [row[0] for row in conn.execute("select agent_id from agents").fetchall()]
    return check_result(
        validate(sessions, agent_sessions_suite(agent_ids), "agent_sessions"),
        agents=len(agent_ids),
    )


# -- dbt tests as asset checks: a sentence each, so the Dagster UI says what is checked -------
def _model_of(test: dict[str, Any]) -> str:
    attached = test.get("attached_node") or ""
    return attached.rsplit(".", 1)[-1] or "the model"


def dbt_test_description(test: dict[str, Any]) -> str:
    """What a dbt data test checks, in words (its own description when schema.yml gives one)."""
    if test.get("description"):
        return str(test["description"])
    meta = test.get("test_metadata") or {}
    name, kwargs = meta.get("name", test.get("name", "test")), meta.get("kwargs") or {}
    where = f"{_model_of(test)}.{kwargs.get('column_name', test.get('column_name') or '')}"
    if name == "not_null":
        return f"dbt: {where} is never null."
    if name == "unique":
        return f"dbt: every {where} value appears once."
    if name == "accepted_values":
        values = ", ".join(str(v) for v in kwargs.get("values", []))
        return f"dbt: {where} is one of {values} (or null)."
    if name == "relationships":
        target = str(kwargs.get("to", "")).removeprefix("ref('").removesuffix("')")
        return f"dbt: every {where} exists in {target}.{kwargs.get('field')}."
    if name == "unique_combination":
        columns = ", ".join(kwargs.get("columns", []))
        return f"dbt: one row per ({columns}) in {_model_of(test)}."
    return f"dbt test {name} on {_model_of(test)}."


def column_schema(conn: Any, table: str, schema: str = "main") -> dg.TableSchema | None:
    """A table's columns with their warehouse types (DuckDB's names), for the Dagster UI."""
    rows = conn.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = ? and table_name = ? order by ordinal_position",
        [schema, table],
    ).fetchall()
    if not rows:
        return None
    return dg.TableSchema(columns=[dg.TableColumn(name, str(kind)) for name, kind in rows])


def _model_table(event: Any) -> str | None:
    metadata = getattr(event, "metadata", None) or {}
    unique_id = metadata.get("unique_id")
    text = str(getattr(unique_id, "value", unique_id) or "")
    return text.rsplit(".", 1)[-1] if text.startswith("model.") else None


def with_column_schemas(events: Iterable[Any], warehouse: WarehouseResource) -> Iterator[Any]:
    """dbt's events, each model's materialization carrying its columns and their types.

    The warehouse is read once dbt has finished (dbt-duckdb holds the file while it runs);
    events come out then, and a dbt failure is raised after the events it produced."""
    held: list[Any] = []
    failure: Exception | None = None
    try:
        held.extend(events)
    except Exception as exc:  # re-raised below, after what dbt did build
        failure = exc
    schemas: dict[str, dg.TableSchema] = {}
    tables = {t for t in map(_model_table, held) if t}
    if tables:
        try:
            with warehouse.connect(read_only=True) as conn:
                for table in sorted(tables):
                    found = column_schema(conn, table)
                    if found is not None:
                        schemas[table] = found
        except Exception as exc:  # column types are a nicety: never fail a build on them
            logging.getLogger(__name__).warning("column types not read: %s", exc)
    for event in held:
        table = _model_table(event)
        if table in schemas and hasattr(event, "with_metadata"):
            event = event.with_metadata({**event.metadata, "dagster/column_schema": schemas[table]})
        yield event
    if failure is not None:
        raise failure
