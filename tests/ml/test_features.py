"""Features use only what was known when the agent was chosen."""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import pytest

from ml.features import FEATURES, load_session_features, session_features

T0 = datetime(2026, 3, 1, 9, 0, 0)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


SESSIONS = [
    # id, status, requested, started, ended, capability, complexity
    ("s1", "succeeded", at(0), at(0), at(10), "code.generate", 0.2),
    ("s2", "failed", at(1), at(11), at(20), "code.generate", 0.9),
    ("s3", "succeeded", at(2), at(15), at(30), "code.review", 0.5),  # sees s1 only
    ("s4", "failed", at(3), at(25), at(40), "code.review", 0.7),  # sees s1 and s2
    ("s5", "failed", at(4), None, at(5), "code.review", 0.4),  # no agent ever chosen
    ("s6", "running", at(5), at(50), None, "code.generate", 0.3),
]
CALLS = [
    # session, step, attempt, agent, started, price in, price out, proficiency
    ("s1", "solo", 1, "agt_a", at(0), 0.001, 0.002, 4),
    ("s2", "solo", 1, "agt_a", at(11), 0.001, 0.002, 4),
    ("s3", "solo", 1, "agt_a", at(15), 0.001, 0.002, 4),
    ("s4", "solo", 2, "agt_b", at(33), 0.005, 0.009, 2),
    ("s4", "solo", 1, "agt_a", at(25), 0.001, 0.002, 3),  # attempt 1 counts
    ("s6", "solo", 1, "agt_b", at(50), 0.005, 0.009, 2),
]


@pytest.fixture
def warehouse(tmp_path) -> str:
    path = str(tmp_path / "warehouse.duckdb")
    with duckdb.connect(path) as conn:
        conn.execute(
            "create table agent_sessions (session_id varchar, tenant_id varchar, status varchar, "
            "succeeded boolean, capability varchar, pattern varchar, optimize varchar, "
            "complexity double, requested_input_tokens bigint, max_attempts integer, "
            "requested_at timestamp, started_at timestamp, ended_at timestamp)"
        )
        conn.executemany(
            "insert into agent_sessions values (?, 'default', ?, ?, ?, 'solo', 'balanced', ?, "
            "800, 1, ?, ?, ?)",
            [
                (s, st, st == "succeeded", cap, cx, rq, sa, en)
                for s, st, rq, sa, en, cap, cx in SESSIONS
            ],
        )
        conn.execute(
            "create table agent_step_calls (session_id varchar, step_id varchar, attempt integer, "
            "agent_id varchar, started_at timestamp, input_per_1k_tokens double, "
            "output_per_1k_tokens double, proficiency integer)"
        )
        conn.executemany("insert into agent_step_calls values (?, ?, ?, ?, ?, ?, ?, ?)", CALLS)
    return path


def test_prior_success_rate_counts_only_sessions_ended_before_selection(warehouse: str) -> None:
    frame = load_session_features(warehouse)
    rows = {r["session_id"]: r for r in frame.iter_rows(named=True)}
    assert list(rows) == ["s1", "s2", "s3", "s4", "s5"]  # finished only, in request order
    assert rows["s1"]["agent_prior_sessions"] == 0
    assert rows["s1"]["agent_prior_success_rate"] == pytest.approx(0.5)
    assert rows["s3"]["agent_prior_sessions"] == 1
    assert rows["s3"]["agent_prior_success_rate"] == pytest.approx(2 / 3)
    assert rows["s4"]["agent_prior_sessions"] == 2
    assert rows["s4"]["agent_prior_success_rate"] == pytest.approx(2 / 4)
    assert rows["s4"]["agent_id"] == "agt_a" and rows["s4"]["proficiency"] == 3
    assert rows["s5"]["agent_id"] is None and rows["s5"]["proficiency"] == 0
    assert [rows[s]["failed"] for s in rows] == [0, 1, 0, 1, 1]
    assert set(FEATURES) <= set(frame.columns)


def test_unfinished_sessions_can_be_scored_too(warehouse: str) -> None:
    with duckdb.connect(warehouse, read_only=True) as conn:
        frame = session_features(conn, finished_only=False)
    running = frame.filter(frame["session_id"] == "s6").row(0, named=True)
    assert running["status"] == "running" and running["failed"] == 0
    assert running["agent_prior_sessions"] == 0  # agt_b had no finished session before
