"""`nofx agents`: register, list and remove agents."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import ValidationError as PydanticValidationError
from rich.table import Table

from nofx.cli.shared import console, fail, open_store
from nofx.domain import AgentSpec
from nofx.errors import NofxError
from nofx.registry import AgentRegistry

agents_app = typer.Typer(help="Register, list and remove agents.", no_args_is_help=True)


def _load_specs(path: str) -> list[dict[str, Any]]:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    data = yaml.safe_load(text)
    if isinstance(data, dict) and "agents" in data:
        data = data["agents"]
    return data if isinstance(data, list) else [data]


@agents_app.command("register")
def agents_register(
    path: Annotated[
        str,
        typer.Argument(
            help="YAML or JSON file with one agent, a list, or {agents: [...]}; - for stdin"
        ),
    ],
) -> None:
    """Register agents from a spec file. Every spec is checked before any is written."""
    _, store = open_store()
    registry = AgentRegistry(store)
    try:
        specs = [AgentSpec.model_validate(raw) for raw in _load_specs(path)]
    except (OSError, yaml.YAMLError) as exc:
        raise fail(f"cannot read {path}: {exc}") from None
    except PydanticValidationError as exc:
        lines = [f"  {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise fail("the agent spec is not valid:\n" + "\n".join(lines)) from None
    try:
        for spec in specs:
            agent = registry.register(spec)
            console.print(
                f"registered [bold]{agent.name}[/] as {agent.agent_id} (version {agent.version})"
            )
    except NofxError as exc:
        raise fail(str(exc)) from None


@agents_app.command("list")
def agents_list(
    capability: Annotated[
        str | None, typer.Option(help="only agents offering this capability")
    ] = None,
    tenant: Annotated[str | None, typer.Option(help="only this tenant")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """List registered agents."""
    _, store = open_store()
    agents = AgentRegistry(store).list(tenant_id=tenant, capability=capability)
    if as_json:
        console.print_json(json.dumps([a.model_dump(mode="json") for a in agents]))
        return
    table = Table(title=f"{len(agents)} agents")
    for col in ("id", "name", "tenant", "capabilities", "$/1k in", "$/1k out", "provider", "v"):
        table.add_column(col)
    for a in agents:
        table.add_row(
            a.agent_id,
            a.name,
            a.tenant_id,
            ", ".join(f"{c.name}:{c.proficiency}" for c in a.capabilities),
            f"{a.pricing.input_per_1k_tokens:.5f}",
            f"{a.pricing.output_per_1k_tokens:.5f}",
            a.provider.kind.value,
            str(a.version),
        )
    console.print(table)


@agents_app.command("remove")
def agents_remove(agent_id: str) -> None:
    """Deregister an agent (its history stays in the event store)."""
    _, store = open_store()
    try:
        agent = AgentRegistry(store).deregister(agent_id)
    except NofxError as exc:
        raise fail(str(exc)) from None
    console.print(f"deregistered {agent.name} ({agent_id})")
