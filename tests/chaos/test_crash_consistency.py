"""Crash consistency of acknowledged writes, and what the durability setting costs in fsyncs.

A copy of the database files taken while writes run is what a process crash at that instant
leaves behind. Automatic checkpoints are off during the test so that the main file does not
change under the copy (a checkpoint moving pages between the two copies would make an image
no crash could produce); the WAL only grows, and a frame half-copied is dropped by SQLite's
checksums on reopen, exactly as after a crash.

What a copy cannot show is the loss of an OS crash or power cut; that is what ``full``
buys with an fsync per commit group, and the second test counts those fsyncs with strace.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import event

from nofx.domain import NewEvent
from nofx.store import EventStore
from tests.chaos.scenario import REPO_ROOT


def test_every_write_acknowledged_before_a_copy_is_in_the_copy(tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    store = EventStore(f"sqlite:///{db}", durability="full")

    @event.listens_for(store.engine, "connect")
    def _no_autocheckpoint(dbapi_connection, _record) -> None:
        dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")

    store.engine.dispose()  # pooled connections from the migration run get the pragma too
    acknowledged: list[str] = []
    stop = threading.Event()

    def client(n: int) -> None:
        i = 0
        while not stop.is_set():
            key = f"c{n}/{i}"
            store.append(f"s{n}", "t", "default", [NewEvent(type="E", idempotency_key=key)])
            acknowledged.append(key)  # only after the store said it is durable
            i += 1

    clients = [threading.Thread(target=client, args=(n,)) for n in range(16)]
    for thread in clients:
        thread.start()
    rng = random.Random(12)
    copies: list[tuple[Path, list[str]]] = []
    try:
        for c in range(12):
            time.sleep(rng.uniform(0.005, 0.08))
            before = list(acknowledged)  # acknowledged before this copy began
            target = tmp_path / f"copy{c}"
            target.mkdir()
            shutil.copyfile(db, target / db.name)
            wal = db.with_name(db.name + "-wal")
            if wal.exists():
                shutil.copyfile(wal, target / wal.name)
            copies.append((target / db.name, before))
    finally:
        stop.set()
        for thread in clients:
            thread.join()
        store.dispose()

    assert len(acknowledged) > 100, "too few writes ran to test anything"
    grew = 0
    for copy, before in copies:
        conn = sqlite3.connect(copy)
        present = {row[0] for row in conn.execute("SELECT idempotency_key FROM events")}
        per_stream = dict(
            conn.execute("SELECT stream_id, count(*) = max(seq) FROM events GROUP BY stream_id")
        )
        conn.close()
        missing = [key for key in before if key not in present]
        assert not missing, f"{copy.parent.name} lost {len(missing)} acknowledged writes"
        assert all(per_stream.values()), "a stream has a gap in its seq numbers"
        grew += len(present) > len(before)
    assert len({len(before) for _, before in copies}) > 6  # copies at many different instants
    assert grew > 0  # and some copies caught writes not yet acknowledged: really mid-flight


FSYNC_SCRIPT = """
import sys, tempfile
from nofx.domain import NewEvent
from nofx.store import EventStore
store = EventStore(f"sqlite:///{tempfile.mkdtemp()}/e.db", durability=sys.argv[1])
store.append("warm", "t", "default", [NewEvent(type="E")])
before = store.writer.stats.groups
for i in range(100):
    store.append("s", "t", "default", [NewEvent(type="E")])
print("GROUPS", store.writer.stats.groups - before, file=sys.stderr)
store.dispose()
"""


def fsyncs(durability: str, tmp_path: Path) -> tuple[int, int]:
    script = tmp_path / "fsyncs.py"
    script.write_text(FSYNC_SCRIPT)
    done = subprocess.run(
        [
            "strace",
            "-f",
            "-c",
            "-e",
            "trace=fsync,fdatasync",
            sys.executable,
            str(script),
            durability,
        ],
        cwd=REPO_ROOT,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    groups = int(done.stderr.split("GROUPS", 1)[1].split()[0])
    calls = sum(
        int(line.split()[3])
        for line in done.stderr.splitlines()
        if line.strip().endswith(("fsync", "fdatasync")) and len(line.split()) >= 5
    )
    return calls, groups


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_full_durability_fsyncs_every_commit_group_and_normal_does_not(tmp_path: Path) -> None:
    full_calls, full_groups = fsyncs("full", tmp_path)
    normal_calls, normal_groups = fsyncs("normal", tmp_path)
    assert full_groups == normal_groups == 100  # one caller at a time: one group per write
    assert full_calls >= full_groups  # at least one fsync per acknowledged group
    assert normal_calls < 20  # start-up and checkpoints only, not one per commit
