"""The ``nofx`` command line: demo, agents, sessions, runtime, database and UIs.

One module per command group (each group module owns its sub-app); this package assembles
them into the root `app` (the ``nofx`` console script). Top-level commands are registered
here, not by decorators in their modules: the registration order is the order `nofx --help`
lists them, and import order (which the formatter sorts) must not decide it.
"""

from __future__ import annotations

from nofx.cli.agents import agents_app
from nofx.cli.db import db_app
from nofx.cli.demo import _summary_table, demo
from nofx.cli.keys import keys_app, local_admin_key
from nofx.cli.pools import pools_app
from nofx.cli.runtime import run, worker
from nofx.cli.sessions import sessions_app
from nofx.cli.shared import app
from nofx.cli.up import (
    LOCAL_DAGSTER_INSTANCE,
    ensure_dagster_instance,
    ui_commands,
    ui_ports,
    up,
    where,
    worker_command,
)
from nofx.cli.workflows import workflows_app

app.command("run")(run)
app.command("worker")(worker)
app.command("demo")(demo)
app.command("up")(up)
app.command("where")(where)
app.add_typer(agents_app, name="agents")
app.add_typer(sessions_app, name="sessions")
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(workflows_app, name="workflows")
app.add_typer(workflows_app, name="workflow", hidden=True)  # the singular works too
app.add_typer(pools_app, name="pools")


def main() -> None:
    """Run the command line (what ``python -m nofx.cli`` does)."""
    app()


__all__ = [
    "LOCAL_DAGSTER_INSTANCE",
    "_summary_table",
    "app",
    "ensure_dagster_instance",
    "local_admin_key",
    "main",
    "ui_commands",
    "ui_ports",
    "worker_command",
]
