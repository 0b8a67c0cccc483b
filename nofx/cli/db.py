"""`nofx db`: the store's schema."""

from __future__ import annotations

import typer

from nofx.cli.shared import console
from nofx.settings import Settings

db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply migrations to the configured store (the embedded default does this on start)."""
    settings = Settings.from_env()
    settings.ensure_dirs()
    from nofx.store.event_store import make_engine
    from nofx.store.migrate import current_revision, upgrade

    engine = make_engine(settings.database_url)
    upgrade(engine)
    console.print(f"schema at revision {current_revision(engine)} ({engine.dialect.name})")
