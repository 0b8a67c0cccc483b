"""The group-commit writer's own queries, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nofx.domain import NewEvent
from nofx.store import EventStore
from nofx.store.writer import _stream_versions


def versions_hold(url: str, lengths: list[int], unknown: int) -> None:
    store = EventStore(url)
    try:
        for i, n in enumerate(lengths):
            if n:
                store.append(f"s{i}", "t", "default", [NewEvent(type="E") for _ in range(n)])
        asked = [f"s{i}" for i in range(len(lengths))] + [f"new{j}" for j in range(unknown)]
        with store.engine.connect() as conn:
            found = _stream_versions(conn, asked)
        assert found == {
            **{f"s{i}": n for i, n in enumerate(lengths)},
            **{f"new{j}": 0 for j in range(unknown)},
        }
    finally:
        store.dispose()


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lengths=st.lists(st.integers(min_value=0, max_value=30), min_size=0, max_size=6),
    unknown=st.integers(min_value=0, max_value=3),
)
def test_stream_versions_are_each_streams_last_seq(
    tmp_path_factory: pytest.TempPathFactory, lengths: list[int], unknown: int
) -> None:
    path: Path = tmp_path_factory.mktemp("writer") / "e.db"
    versions_hold(f"sqlite:///{path}", lengths, unknown)


def test_stream_versions_in_chunks_of_many_streams(tmp_path: Path) -> None:
    versions_hold(f"sqlite:///{tmp_path / 'e.db'}", [1, 0, 3] * 200, 5)


def test_stream_versions_on_postgresql(pg_url: str) -> None:
    versions_hold(pg_url, [2, 0, 5, 1], 3)
