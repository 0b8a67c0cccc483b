"""Session features for failure prediction, built only from what was known before the run.

One row per finished session (succeeded or failed) of the ``agent_sessions`` mart, joined to
the first agent selected for it (``agent_step_calls``): the agent's price and proficiency at
its spec version then, and its success rate over sessions that ended before this one
started (when the agent was chosen). Nothing of the session's own outcome leaks in but the
label.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import polars as pl

CATEGORICAL_FEATURES = ("capability", "pattern", "optimize")
NUMERIC_FEATURES = (
    "complexity",
    "requested_input_tokens",
    "max_attempts",
    "input_per_1k_tokens",
    "output_per_1k_tokens",
    "proficiency",
    "agent_prior_success_rate",
    "agent_prior_sessions",
)
FEATURES = CATEGORICAL_FEATURES + NUMERIC_FEATURES
LABEL = "failed"
FINISHED_STATUSES = ("succeeded", "failed")

# The agent prior is smoothed towards 0.5 (a Beta(1, 1) prior) so a new agent is not 0 or 1.
SESSION_FEATURES_SQL = """
with first_call as (
    select *
    from (
        select
            session_id,
            agent_id,
            input_per_1k_tokens,
            output_per_1k_tokens,
            proficiency,
            row_number() over (
                partition by session_id order by started_at nulls last, attempt, step_id
            ) as nth
        from agent_step_calls
    ) as ranked
    where nth = 1
),

sessions as (
    select
        s.session_id,
        s.tenant_id,
        s.status,
        s.succeeded,
        s.capability,
        s.pattern,
        coalesce(s.optimize, 'balanced') as optimize,
        coalesce(s.complexity, 0.5) as complexity,
        coalesce(s.requested_input_tokens, 0) as requested_input_tokens,
        coalesce(s.max_attempts, 1) as max_attempts,
        s.requested_at,
        coalesce(s.started_at, s.requested_at) as selected_at,
        s.ended_at,
        f.agent_id as first_agent_id,
        f.input_per_1k_tokens,
        f.output_per_1k_tokens,
        f.proficiency
    from agent_sessions as s
    left join first_call as f on s.session_id = f.session_id
),

agent_history as (
    select
        current.session_id,
        count(past.session_id) as agent_prior_sessions,
        coalesce(sum(case when past.succeeded then 1 else 0 end), 0) as agent_prior_successes
    from sessions as current
    left join sessions as past
        on past.first_agent_id = current.first_agent_id
        and past.status in ('succeeded', 'failed')
        and past.ended_at < current.selected_at
    group by current.session_id
)

select
    s.session_id,
    s.tenant_id,
    s.status,
    s.requested_at,
    s.first_agent_id as agent_id,
    s.capability,
    s.pattern,
    s.optimize,
    cast(s.complexity as double precision) as complexity,
    cast(s.requested_input_tokens as double precision) as requested_input_tokens,
    cast(s.max_attempts as double precision) as max_attempts,
    cast(coalesce(s.input_per_1k_tokens, 0) as double precision) as input_per_1k_tokens,
    cast(coalesce(s.output_per_1k_tokens, 0) as double precision) as output_per_1k_tokens,
    cast(coalesce(s.proficiency, 0) as double precision) as proficiency,
    (h.agent_prior_successes + 1.0) / (h.agent_prior_sessions + 2.0) as agent_prior_success_rate,
    cast(h.agent_prior_sessions as double precision) as agent_prior_sessions,
    cast(case when s.status = 'failed' then 1 else 0 end as integer) as failed
from sessions as s
join agent_history as h on s.session_id = h.session_id
{where}
order by s.requested_at, s.session_id
"""


def session_features(conn: Any, *, finished_only: bool = True) -> pl.DataFrame:
    """Feature rows in request order; ``finished_only`` keeps succeeded and failed sessions.

    ``conn`` is a DuckDB connection or ``nofx.warehouse.postgres.PostgresConnection`` (the
    marts' schema first on its search path): the SQL is in the dialect both accept."""
    statuses = ", ".join(f"'{s}'" for s in FINISHED_STATUSES)
    where = f"where s.status in ({statuses})" if finished_only else ""
    return conn.sql(SESSION_FEATURES_SQL.format(where=where)).pl()


def load_session_features(warehouse: Path | str, *, finished_only: bool = True) -> pl.DataFrame:
    """Open the warehouse read-only and build the features: a DuckDB file, or a PostgreSQL
    warehouse given by its URL (``postgresql://...``)."""
    if str(warehouse).startswith("postgresql"):
        from nofx.warehouse import postgres

        with postgres.connect(str(warehouse), read_only=True) as pg:
            return session_features(pg, finished_only=finished_only)
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return session_features(conn, finished_only=finished_only)
