"""Shared benchmark plumbing: arguments, a rich table, and JSON with the machine it ran on."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="a smaller run that finishes in under a minute"
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="write results as JSON to this path"
    )
    return parser.parse_args()


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def show(title: str, rows: list[dict[str, Any]], console: Console | None = None) -> None:
    """Print rows (dicts with the same keys) as a table."""
    console = console or Console(width=max(160, Console().width))
    if not rows:
        console.print(f"{title}: no rows")
        return
    table = Table(title=title)
    for key in rows[0]:
        table.add_column(
            str(key), justify="right" if isinstance(rows[0][key], int | float) else "left"
        )
    for row in rows:
        table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()))
    console.print(table)


def write(path: Path | None, name: str, quick: bool, results: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "quick": quick, "machine": machine(), **results}
    path.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
    Console().print(f"wrote {path}")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]
