"""The warehouse contract (nofx.data_contract) and the dbt project say the same thing.

Fast (no dbt run): they read the YAML and SQL files, so a stream type, a raw column or a
published mart added on one side only fails here, naming what is missing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from nofx import data_contract
from nofx.data_contract import RAW_EVENT_COLUMNS, Mart, StreamType, column_names
from nofx.store import schema
from nofx.store.event_rows import EVENT_COLUMNS as WRITER_COLUMNS

DBT = Path(__file__).resolve().parents[2] / "dbt"
STAGING = DBT / "models" / "staging"
MARTS = DBT / "models" / "marts"


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def models(folder: Path) -> dict[str, dict]:
    """Every model documented in the folder's YAML files (one file per family)."""
    found: dict[str, dict] = {}
    for path in sorted(folder.glob("*.yml")):
        for model in load(path).get("models", []):
            assert model["name"] not in found, f"{model['name']} documented twice"
            found[model["name"]] = model
    return found


def raw_source() -> dict:
    (raw,) = load(STAGING / "sources.yml")["sources"]
    (table,) = raw["tables"]
    return {"schema": raw["schema"], **table}


def test_the_dbt_source_declares_the_contract_raw_events_columns_and_types() -> None:
    source = raw_source()
    assert f"{source['schema']}.{source['name']}" == data_contract.RAW_EVENTS_TABLE
    declared = [(c["name"], c["data_type"]) for c in source["columns"]]
    assert declared == [(c.name, c.sql_type) for c in RAW_EVENT_COLUMNS]


def test_the_source_is_checked_for_freshness_on_its_load_time() -> None:
    config = raw_source()["config"]
    assert config["loaded_at_field"] == "loaded_at"
    assert "loaded_at" in column_names(RAW_EVENT_COLUMNS)
    assert config["freshness"]["warn_after"]["count"] > 0


def test_the_store_writes_the_contract_event_columns() -> None:
    table = {c.name: c for c in schema.events.columns}
    assert list(table) == ["position", *column_names(data_contract.EVENT_COLUMNS)]
    assert column_names(data_contract.EVENT_COLUMNS) == WRITER_COLUMNS
    for column in data_contract.EVENT_COLUMNS:
        assert table[column.name].nullable == column.nullable, column.name


def test_every_stream_type_has_its_staging_model() -> None:
    missing = []
    for stream in StreamType:
        path = STAGING / f"stg_{stream.value}__events.sql"
        sql = path.read_text() if path.exists() else ""
        if not re.search(rf"stream_type\s*=\s*'{stream.value}'", sql):
            missing.append(stream.value)
    assert not missing, f"no staging model selects these stream types: {missing}"
    documented = models(STAGING)
    assert {f"stg_{s.value}__events" for s in StreamType} <= set(documented)


def test_the_staging_layer_accepts_exactly_the_contract_stream_types() -> None:
    (column,) = [c for c in models(STAGING)["stg_events"]["columns"] if c["name"] == "stream_type"]
    (accepted,) = [t["accepted_values"] for t in column["data_tests"] if "accepted_values" in t]
    assert sorted(accepted["arguments"]["values"]) == sorted(s.value for s in StreamType)


def test_the_published_marts_are_the_contract_marts_with_enforced_contracts() -> None:
    assert {p.stem for p in MARTS.glob("*.sql")} == {m.value for m in Mart}
    documented = models(MARTS)
    assert set(documented) == {m.value for m in Mart}
    for name, model in documented.items():
        assert model["config"]["contract"] == {"enforced": True}, name
        untyped = [c["name"] for c in model["columns"] if not c.get("data_type")]
        assert not untyped, f"{name}: columns without a data_type {untyped}"


def test_marts_read_only_staging_and_never_parse_json() -> None:
    for path in MARTS.glob("*.sql"):
        sql = path.read_text()
        assert "source(" not in sql, path.name
        assert "stg_events" not in sql, f"{path.name} reads every event: ref a stream's model"
        assert not re.search(r"nofx\.json_", sql), f"{path.name} parses JSON: do it in staging"
        refs = set(re.findall(r"ref\('([a-z_]+)'\)", sql))
        assert all(r.startswith("stg_") or r in set(Mart) for r in refs), (path.name, refs)


def test_tenant_scoped_marts_carry_a_tenant() -> None:
    documented = models(MARTS)
    for mart in data_contract.TENANT_SCOPED_MARTS:
        assert "tenant_id" in {c["name"] for c in documented[mart]["columns"]}, mart


def test_exposures_name_published_marts_only() -> None:
    exposures = load(DBT / "models" / "exposures.yml")["exposures"]
    assert {e["type"] for e in exposures} >= {"dashboard", "application", "ml"}
    known = {m.value for m in Mart} | {data_contract.ALL_EVENTS_VIEW}
    for exposure in exposures:
        refs = {re.fullmatch(r"ref\('([a-z_]+)'\)", d).group(1) for d in exposure["depends_on"]}
        assert refs <= known, (exposure["name"], refs - known)


def test_the_duckdb_landing_table_has_the_contract_shape() -> None:
    """The landing DDL (dagster_project/lib/raw_events.py) is still written out by hand: this
    catches it drifting from the contract until it is generated from it."""
    import duckdb

    from dagster_project.lib.raw_events import ensure_raw_table

    with duckdb.connect() as conn:
        ensure_raw_table(conn)
        landed = conn.execute(
            "select column_name, data_type, is_nullable = 'YES' from information_schema.columns "
            "where table_schema = ? and table_name = ? order by ordinal_position",
            [data_contract.RAW_SCHEMA, data_contract.RAW_EVENTS],
        ).fetchall()
        expected = [
            (
                c.name,
                conn.execute(f"select typeof(cast(null as {c.sql_type}))").fetchone()[0],
                c.nullable,
            )
            for c in RAW_EVENT_COLUMNS
        ]
    assert landed == expected


@pytest.mark.postgres
def test_the_postgres_landing_table_has_the_contract_shape(pg_url: str) -> None:
    """Same for the PostgreSQL landing: the same DDL, run through the warehouse seam's
    PostgreSQL connection as the raw_events asset runs it (ADR 0026)."""
    from sqlalchemy import create_engine, text

    from dagster_project.lib.raw_events import ensure_raw_table
    from nofx.warehouse import postgres

    with postgres.connect(pg_url) as warehouse:
        ensure_raw_table(warehouse)
    engine = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.begin() as conn:
            landed = conn.execute(
                text(
                    "select column_name, format_type(a.atttypid, a.atttypmod), not a.attnotnull "
                    "from information_schema.columns c join pg_attribute a "
                    "on a.attrelid = 'raw.raw_events'::regclass and a.attname = c.column_name "
                    "where table_schema = 'raw' and table_name = 'raw_events' "
                    "order by ordinal_position"
                )
            ).all()
            expected = [
                (
                    c.name,
                    conn.execute(text(f"select pg_typeof(cast(null as {c.sql_type}))")).scalar(),
                    c.nullable,
                )
                for c in RAW_EVENT_COLUMNS
            ]
    finally:
        engine.dispose()
    assert [tuple(r) for r in landed] == expected
