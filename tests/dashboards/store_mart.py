"""The dashboards' warehouse, built without dbt: ``agent_sessions`` from the store's projection.

The dashboard tests use the real pipeline (``python -m dagster_project.materialize``, which runs
``dbt build``) whenever it exists. This is the fallback for a tree without it, and a second,
independent derivation of the mart that the tests compare with dbt's.

The store's ``sessions`` table is the core's projection of the same events dbt reads, so the
SQL below gives the same rows except for what the projection does not keep:
``started_at`` (null here), ``failed_attempts`` (attempts minus the final successful one, exact
for one-step sessions only) and
``ended_at`` (the last update of a finished session).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
from sqlalchemy import create_engine, text

AGENT_SESSIONS_FROM_STORE = """
create or replace table main.agent_sessions as
with store_sessions as (
    select
        *,
        cast(created_at as timestamp) as created,
        cast(updated_at as timestamp) as updated
    from store_sessions_raw
)
select
    s.session_id,
    s.tenant_id,
    s.pattern,
    json_extract_string(s.request, '$.task.capability') as capability,
    s.status,
    s.status = 'succeeded' as succeeded,
    s.agent_id,
    a.name as agent_name,
    cast(s.attempts as bigint) as attempts,
    cast(greatest(s.attempts - (s.status = 'succeeded')::int, 0) as bigint) as failed_attempts,
    cast(s.input_tokens as bigint) as input_tokens,
    cast(s.output_tokens as bigint) as output_tokens,
    cast(s.input_tokens + s.output_tokens as bigint) as total_tokens,
    s.cost_usd,
    cast(json_extract(s.request, '$.task.complexity') as double) as complexity,
    s.created as requested_at,
    cast(null as timestamp) as started_at,
    case when s.status in ('succeeded', 'failed', 'cancelled') then s.updated end as ended_at,
    case
        when s.status in ('succeeded', 'failed', 'cancelled')
            then datediff('millisecond', s.created, s.updated)
    end as duration_ms,
    s.error_type
from store_sessions as s
left join store_agents as a on s.agent_id = a.agent_id
"""


def build_agent_sessions_from_store(database_url: str, warehouse: Path) -> int:
    """Write ``main.agent_sessions`` from the store at ``database_url``; returns its row count."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            sessions = pl.read_database(
                text(
                    "select session_id, tenant_id, pattern, status, request, agent_id, attempts, "
                    "cost_usd, input_tokens, output_tokens, error_type, "
                    "cast(created_at as varchar) as created_at, "
                    "cast(updated_at as varchar) as updated_at from sessions"
                ),
                conn,
                schema_overrides={"request": pl.Utf8, "agent_id": pl.Utf8, "error_type": pl.Utf8},
            )
            agents = pl.read_database(text("select agent_id, name from agents"), conn)
    finally:
        engine.dispose()
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(warehouse)) as db:
        db.register("store_sessions_raw", sessions.to_arrow())
        db.register("store_agents", agents.to_arrow())
        db.execute(AGENT_SESSIONS_FROM_STORE)
        (rows,) = db.execute("select count(*) from main.agent_sessions").fetchone() or (0,)
    return int(rows)
