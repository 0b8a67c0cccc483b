"""`nofx pools`: agent pools and their autoscaling decisions."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from nofx.cli.shared import console, fail, open_store
from nofx.errors import NofxError
from nofx.registry import AgentRegistry

pools_app = typer.Typer(
    help="Agent pools: replicas that auto-scale on queue and latency; every decision recorded.",
    no_args_is_help=True,
)


@pools_app.command("set")
def pools_set(
    agent_id: str,
    min_replicas: Annotated[int, typer.Option("--min", min=0, help="never fewer replicas")] = 1,
    max_replicas: Annotated[int, typer.Option("--max", min=1, help="never more replicas")] = 8,
    target: Annotated[
        float, typer.Option(min=0.01, max=1.0, help="busy share of capacity to aim for")
    ] = 0.7,
    latency_target_ms: Annotated[
        float | None, typer.Option(help="a p95 above this adds a replica")
    ] = None,
    replicas: Annotated[int | None, typer.Option(help="start at this size")] = None,
) -> None:
    """Give an agent a pool of replicas that scales between --min and --max.

    Calls are capped at replicas x max_concurrency; runtimes scale the pool on its queue
    (and p95 latency, if a target is set)."""
    from nofx.pools import PoolService
    from nofx.routing.autoscale import PolicyError, ScalingPolicy

    _, store = open_store()
    try:
        agent = AgentRegistry(store).get(agent_id)
        policy = ScalingPolicy(
            min_replicas=min_replicas,
            max_replicas=max_replicas,
            target_utilisation=target,
            latency_target_ms=latency_target_ms,
        )
        pool = PoolService(store).configure(agent, policy, replicas=replicas)
    except (NofxError, PolicyError) as exc:
        raise fail(str(exc)) from None
    console.print(
        f"{agent.name}: {pool.replicas} replicas x {agent.max_concurrency} = "
        f"{pool.replicas * agent.max_concurrency} calls at once "
        f"(scales {min_replicas}..{max_replicas} at {target:.0%} busy)"
    )


@pools_app.command("list")
def pools_list(
    decisions: Annotated[
        int, typer.Option(min=0, help="also show this many latest decisions per pool")
    ] = 0,
) -> None:
    """Pools with their size, bounds and last decision."""
    from nofx.pools import PoolService

    _, store = open_store()
    service = PoolService(store)
    agents = {a.agent_id: a for a in AgentRegistry(store).list()}
    table = Table(title="agent pools")
    for col in ("agent", "replicas", "capacity", "bounds", "target", "last decision"):
        table.add_column(col)
    pools = service.list()
    for pool in pools:
        agent = agents.get(pool.agent_id)
        table.add_row(
            agent.name if agent else pool.agent_id,
            str(pool.replicas),
            str(pool.replicas * agent.max_concurrency) if agent else "?",
            f"{pool.policy.min_replicas}..{pool.policy.max_replicas}",
            f"{pool.policy.target_utilisation:.0%}",
            pool.last_reason or "",
        )
    console.print(table if pools else "no pools yet: add one with `nofx pools set AGENT_ID`")
    for pool in pools if decisions else []:
        for event in service.decisions(pool.agent_id, limit=decisions):
            p = event.payload
            if event.type == "PoolScaled":
                line = f"{p['before']} -> {p['after']}: {p['reason']}"
            else:
                bounds = p["policy"]
                line = (
                    f"configured at {p['replicas']} "
                    f"({bounds['min_replicas']}..{bounds['max_replicas']} replicas)"
                )
            console.print(f"  {pool.agent_id} {event.occurred_at:%H:%M:%S} {line}")
