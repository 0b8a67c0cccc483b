"""The store-built ``agent_sessions`` (the fallback) agrees with dbt's, session by session."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import pytest

from dashboards import data, metrics
from tests.dashboards.conftest import store_built_home
from tests.dashboards.store_mart import build_agent_sessions_from_store
from tests.pipeline_fixture import PipelineRun

SAME_IN_BOTH = (
    "session_id, tenant_id, pattern, capability, status, succeeded, agent_id, agent_name, "
    "attempts, input_tokens, output_tokens, total_tokens, complexity, error_type"
)


def test_the_fallback_sql_gives_the_dbt_mart_rows(pipeline: PipelineRun, tmp_path: Path) -> None:
    fallback = tmp_path / "fallback.duckdb"
    rows = build_agent_sessions_from_store(pipeline.settings.database_url, fallback)
    with duckdb.connect(str(fallback)) as conn:
        conn.execute(f"attach '{pipeline.settings.warehouse_path}' as dbt (read_only)")
        (dbt_rows,) = conn.execute("select count(*) from dbt.main.agent_sessions").fetchone()
        differ = conn.execute(
            f"select count(*) from ((select {SAME_IN_BOTH} from main.agent_sessions "
            f"except select {SAME_IN_BOTH} from dbt.main.agent_sessions) union all "
            f"(select {SAME_IN_BOTH} from dbt.main.agent_sessions "
            f"except select {SAME_IN_BOTH} from main.agent_sessions))"
        ).fetchone()
        (cost_gap,) = conn.execute(
            "select max(abs(a.cost_usd - b.cost_usd)) from main.agent_sessions as a "
            "join dbt.main.agent_sessions as b using (session_id)"
        ).fetchone()
        # the projection keeps no failure count: the fallback infers it, which holds for
        # sessions with one step (solo) and not for workflows, where several steps complete
        (solo_gap,) = conn.execute(
            "select count(*) from main.agent_sessions as a "
            "join dbt.main.agent_sessions as b using (session_id) "
            "where a.pattern = 'solo' and a.failed_attempts <> b.failed_attempts"
        ).fetchone()
    assert rows == dbt_rows > 0
    assert differ == (0,)
    assert solo_gap == 0
    assert cost_gap < 1e-6  # the same sums added in another order: a millionth of a dollar
    ours, theirs = (
        data.load_sessions(fallback),
        data.load_sessions(pipeline.settings.warehouse_path),
    )
    ours_head, theirs_head = metrics.headline(ours), metrics.headline(theirs)
    assert (ours_head.sessions, ours_head.succeeded, ours_head.failed) == (
        theirs_head.sessions,
        theirs_head.succeeded,
        theirs_head.failed,
    )
    assert ours_head.cost_usd == pytest.approx(theirs_head.cost_usd)


def test_sessions_still_waiting_count_as_open(tmp_path: Path) -> None:
    settings = store_built_home(tmp_path / "home", finished=12, waiting=3)
    sessions = data.load_sessions(settings.warehouse_path)
    head = metrics.headline(sessions)
    assert (head.sessions, head.open, head.finished) == (15, 3, 12)
    waiting = sessions.filter(pl.col("status") == "requested")
    assert waiting["agent_name"].null_count() == 3
    assert waiting["duration_ms"].null_count() == 3
    finished = sessions.filter(pl.col("status").is_in(metrics.FINISHED))
    assert finished["agent_name"].null_count() == 0
    assert (finished["cost_usd"] > 0).all()
