"""Data-quality checks: Great Expectations 1.x suites run as Dagster asset checks.

``raw_events`` gets a blocking check (schema, not-null, unique positions, value ranges), so
dbt never builds on broken input, and a warning-only check on stream types, so a new kind of
stream from the core is flagged without stopping the pipeline.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg
import great_expectations.expectations as gxe

from dagster_project.lib.expectations import Validation, check_result, merge, validate
from dagster_project.lib.raw_events import RAW_TABLE, ensure_raw_table
from dagster_project.lib.resources import WarehouseResource
from nofx.data_contract import RAW_EVENT_COLUMNS, StreamType, column_names

RAW_COLUMNS = list(column_names(RAW_EVENT_COLUMNS))
REQUIRED_RAW_COLUMNS = [c.name for c in RAW_EVENT_COLUMNS if not c.nullable]
# Stream types the platform models: the core's contract (a new kind goes there, with its
# staging model in dbt/models/staging).
KNOWN_STREAM_TYPES = [t.value for t in StreamType]
EARLIEST_EVENT = datetime(2020, 1, 1)


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
