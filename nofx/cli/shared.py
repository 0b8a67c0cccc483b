"""The root ``nofx`` app and what the command groups share: consoles, errors, the store, and
runtimes with their progress bar."""

from __future__ import annotations

import asyncio
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from nofx.domain import SessionStatus
from nofx.settings import Settings
from nofx.store import EventStore

app = typer.Typer(
    help="NOFX: run fleets of AI agents, record every step as an event, learn from every run.\n\n"
    "State lives under NOFX_HOME (default ./.nofx): SQLite event store, DuckDB warehouse, "
    "MLflow and Dagster. Set NOFX_DATABASE_URL=postgresql://... to use PostgreSQL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

console = Console()
err = Console(stderr=True)


def open_store(settings: Settings | None = None) -> tuple[Settings, EventStore]:
    """The configured store, its directories made (and its migrations run) on first use."""
    settings = settings or Settings.from_env()
    settings.ensure_dirs()
    return settings, EventStore(settings.database_url)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print the error for the user; the caller raises the returned Exit (`raise fail(...)`)."""
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def session_progress() -> Progress:
    """A progress bar counting sessions that succeeded and failed."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("ok {task.fields[ok]}  failed {task.fields[failed]}"),
        TimeElapsedColumn(),
        console=console,
    )


def make_runtime(store: EventStore, *, time_scale: float, seed: int) -> Any:
    from nofx.runtime import Runtime, RuntimeConfig

    return Runtime(store, config=RuntimeConfig(time_scale=time_scale, seed=seed))


def run_with_progress(runtime: Any, total: int, label: str) -> Any:
    with session_progress() as progress:
        bar = progress.add_task(label, total=total, ok=0, failed=0)
        counts = {"ok": 0, "failed": 0}

        def done(session: Any) -> None:
            counts["ok" if session.status is SessionStatus.SUCCEEDED else "failed"] += 1
            progress.update(bar, advance=1, ok=counts["ok"], failed=counts["failed"])

        return asyncio.run(runtime.run_pending(on_done=done))
