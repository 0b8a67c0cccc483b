"""The data platform end to end: events in the store -> raw -> dbt marts -> model -> operations.

Sessions of the demo fleet (simulated agents, every pattern) run through the real runtime,
and their event streams are copied under fresh ids, a day apart into the past, until the store holds the
target number of events (1,000,000; --quick: 100,000). Then each
Dagster stage is materialized in turn and timed: ingest (raw_events), the dbt build,
training (failure model, MLflow), predictions, and the operations assets (accuracy,
alerts, recommendations). The peer for ingest is the obvious hand-written copy in the same
run: pandas.read_sql of the events table into DuckDB.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pandas as pd
import psutil
from sqlalchemy import Text, cast, insert, select

from bench.report import parse_args, show, write
from nofx.fleet import demo_fleet, demo_requests
from nofx.registry import AgentRegistry
from nofx.runtime import Runtime, RuntimeConfig
from nofx.settings import Settings
from nofx.store import EventStore, schema

PATTERNS = ("solo", "pair", "hierarchical", "swarm")


def fill_store(settings: Settings, target_events: int, base_sessions: int) -> dict[str, Any]:
    """Run ``base_sessions`` real sessions, then copy their event streams under fresh session
    ids (each copy a day further back) until the store holds ``target_events``: real event
    shapes at any volume, without waiting for a million simulated calls."""
    store = EventStore(settings.database_url)
    registry = AgentRegistry(store)
    for spec in demo_fleet():
        registry.register(spec)
    runtime = Runtime(store, registry, config=RuntimeConfig(time_scale=0.0, concurrency=512))
    started = time.perf_counter()
    for request in demo_requests(base_sessions, seed=1, patterns=PATTERNS):
        runtime.sessions.submit(request)
    asyncio.run(runtime.run_pending())
    run_s = time.perf_counter() - started
    e = schema.events
    with store.engine.connect() as conn:
        base = [
            dict(r._mapping)
            for r in conn.execute(
                select(
                    e.c.stream_id,
                    e.c.stream_type,
                    e.c.seq,
                    e.c.type,
                    e.c.tenant_id,
                    e.c.occurred_at,
                    e.c.idempotency_key,
                    cast(e.c.payload, Text).label("payload"),
                )
                .where(e.c.stream_type == "session")
                .order_by(e.c.position)
            )
        ]
    copies = 0
    while store.count_events() < target_events:
        copies += 1
        shift = timedelta(days=copies)
        rows = []
        for row in base:
            sid = row["stream_id"].removeprefix("session-")
            new_sid = f"{sid}c{copies}"
            rows.append(
                {
                    **row,
                    "stream_id": f"session-{new_sid}",
                    "occurred_at": row["occurred_at"] - shift,
                    "idempotency_key": None
                    if row["idempotency_key"] is None
                    else f"{row['idempotency_key']}/c{copies}",
                    "payload": json.loads(row["payload"].replace(sid, new_sid)),
                }
            )
        with store.engine.begin() as conn:
            conn.execute(insert(e), rows)
    events = store.count_events()
    store.dispose()
    return {
        "events": events,
        "sessions": base_sessions * (copies + 1),
        "base_sessions_run_s": run_s,
        "generate_s": time.perf_counter() - started,
    }


def peer_pandas_copy(settings: Settings, target: Path) -> float:
    """Events per second for the naive copy: read the whole table with pandas, insert."""
    started = time.perf_counter()
    with sqlite3.connect(settings.database_url.removeprefix("sqlite:///")) as source:
        frame = pd.read_sql("select * from events order by position", source)
    with duckdb.connect(str(target)) as conn:
        conn.register("frame", frame)
        conn.execute("create table raw_events as select * from frame")
    return len(frame) / (time.perf_counter() - started)


def ingest_copy_rate(settings: Settings, target: Path) -> float:
    """Events per second for the raw_events copy itself (the Dagster stage also runs the
    Great Expectations checks, timed separately as ingest_stage_s)."""
    from dagster_project.lib.raw_events import copy_new_events

    store = EventStore(settings.database_url)
    started = time.perf_counter()
    with duckdb.connect(str(target)) as conn:
        copied = copy_new_events(store, conn).rows_added
    elapsed = time.perf_counter() - started
    store.dispose()
    return copied / elapsed


def materialize_stage(
    stage: str, groups: tuple[str, ...], settings: Settings, instance: dg.DagsterInstance
) -> float:
    from dagster_project.definitions import defs
    from dagster_project.lib.resources import build_resources
    from dagster_project.materialize import materializable

    definitions = defs()
    graph = definitions.resolve_asset_graph()
    keys = [k for k in graph.materializable_asset_keys if graph.get(k).group_name in groups]
    assets = materializable(definitions)
    started = time.perf_counter()
    result = dg.materialize(
        assets,
        selection=keys,
        instance=instance,
        resources=build_resources(settings),
        run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
        raise_on_error=False,
    )
    if not result.success:
        raise SystemExit(f"stage {stage} failed: see the Dagster run {result.run_id}")
    return time.perf_counter() - started


class TreeMemory:
    """Peak resident memory of this process and its children (dbt runs as one), sampled
    while the pipeline stages run; the data generation and the peer are not counted."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += proc.memory_info().rss
            self.peak_mb = max(self.peak_mb, total / 2**20)
            time.sleep(self.interval_s)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    target = 100_000 if args.quick else 1_000_000
    base_sessions = 300 if args.quick else 1_000
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env({"NOFX_HOME": str(Path(tmp) / "home")})
        settings.ensure_dirs()
        filled = fill_store(settings, target, base_sessions)
        peer = peer_pandas_copy(settings, Path(tmp) / "peer.duckdb")
        ours = ingest_copy_rate(settings, Path(tmp) / "ours.duckdb")
        timings: dict[str, float] = {}
        with TreeMemory() as memory, dg.DagsterInstance.ephemeral() as instance:
            for stage, groups in (
                ("ingest", ("ingest",)),
                ("dbt_build", ("transform",)),
                ("ml", ("ml",)),
                ("operations", ("operations",)),
            ):
                timings[stage] = materialize_stage(stage, groups, settings, instance)
    ingest_rate = ours
    results = {
        "events": filled["events"],
        "sessions": filled["sessions"],
        "generate_s": round(filled["generate_s"], 2),
        "base_sessions_run_s": round(filled["base_sessions_run_s"], 2),
        "events_per_s_ingest": round(ingest_rate, 1),
        "peer_pandas_events_per_s": round(peer, 1),
        "ingest_ratio_vs_pandas": round(ingest_rate / peer, 3),
        "ingest_stage_s": round(timings["ingest"], 2),
        "dbt_build_s": round(timings["dbt_build"], 2),
        "train_s": round(timings["ml"], 2),
        "operations_s": round(timings["operations"], 2),
        "end_to_end_s": round(sum(timings.values()), 2),
        "peak_rss_mb": round(memory.peak_mb, 1),
    }
    show("pipeline end to end", [results])
    write(args.json, "pipeline", args.quick, results)


if __name__ == "__main__":
    main()
