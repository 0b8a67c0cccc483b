"""A pipeline-like writer in another process, holding the DuckDB file's write lock."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HOLD = """
import sys, time, duckdb
conn = duckdb.connect(sys.argv[1])
conn.execute("create table if not exists main.writer_probe (x integer)")
print("holding", flush=True)
time.sleep(120)
"""


@contextmanager
def writer_holding(path: Path) -> Iterator[None]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
        yield
    finally:
        proc.kill()
        proc.wait(timeout=10)
