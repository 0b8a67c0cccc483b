"""`nofx sessions`: submit, list and inspect sessions."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from pydantic import ValidationError as PydanticValidationError
from rich.table import Table

from nofx.cli.shared import console, fail, open_store
from nofx.domain import PatternName, SessionRequest, SessionStatus, Task
from nofx.errors import NofxError
from nofx.registry import AgentRegistry

sessions_app = typer.Typer(help="Submit, list and inspect sessions.", no_args_is_help=True)


@sessions_app.command("submit")
def sessions_submit(
    capability: Annotated[str, typer.Option(help="capability the task needs, e.g. code.generate")],
    prompt: Annotated[str, typer.Option(help="what to do")],
    pattern: Annotated[PatternName, typer.Option(help="orchestration pattern")] = PatternName.SOLO,
    complexity: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="0 trivial .. 1 very hard")
    ] = 0.5,
    budget: Annotated[float | None, typer.Option(help="max USD to spend")] = None,
    tenant: Annotated[str, typer.Option()] = "default",
    run: Annotated[
        bool, typer.Option("--run", help="run it now instead of leaving it for a worker")
    ] = False,
) -> None:
    """Request a session. It runs when a runtime picks it up (`nofx run`, a worker, or Dagster)."""
    _, store = open_store()
    from nofx.runtime import Runtime

    runtime = Runtime(store)
    try:
        request = SessionRequest(
            task=Task(prompt=prompt, capability=capability, complexity=complexity),
            pattern=pattern,
            budget_usd=budget,
            tenant_id=tenant,
        )
        session = runtime.sessions.submit(request)
    except PydanticValidationError as exc:
        raise fail(
            "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        ) from None
    except NofxError as exc:
        raise fail(str(exc)) from None
    console.print(f"requested session {session.session_id}")
    if run:
        session = asyncio.run(runtime.run_session(session.session_id))
        console.print(
            f"{session.session_id}: {session.status.value}, ${session.cost_usd:.4f}, "
            f"{session.output or session.error_type}"
        )


@sessions_app.command("list")
def sessions_list(
    status: Annotated[SessionStatus | None, typer.Option(help="only this status")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 20,
) -> None:
    """The newest sessions."""
    _, store = open_store()
    from nofx.sessions import SessionService

    rows = SessionService(store, AgentRegistry(store)).list(status=status, limit=limit)
    table = Table(title=f"{len(rows)} newest sessions")
    for col in ("id", "pattern", "capability", "status", "attempts", "cost $", "created"):
        table.add_column(col)
    for s in rows:
        table.add_row(
            s.session_id,
            s.pattern.value,
            s.task.capability,
            s.status.value,
            str(s.attempts),
            f"{s.cost_usd:.4f}",
            s.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
    console.print(table)


@sessions_app.command("show")
def sessions_show(session_id: str) -> None:
    """A session and its events."""
    _, store = open_store()
    from nofx.sessions import SessionService

    service = SessionService(store, AgentRegistry(store))
    try:
        session = service.get(session_id)
    except NofxError as exc:
        raise fail(str(exc)) from None
    console.print_json(session.model_dump_json())
    table = Table(title="events")
    for col in ("seq", "type", "at", "detail"):
        table.add_column(col)
    for e in service.events(session_id):
        detail = e.payload.get("gen_ai.agent.name") or e.payload.get("error.type") or ""
        table.add_row(str(e.seq), e.type, e.occurred_at.strftime("%H:%M:%S.%f")[:-3], str(detail))
    console.print(table)
