"""`nofx workflows`: validate, analyse, plan and run workflows."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table

from nofx.cli.shared import console, err, fail, make_runtime, open_store
from nofx.domain import AgentSpec, PatternName, SessionRequest, SessionStatus, Task
from nofx.errors import NofxError
from nofx.registry import AgentRegistry
from nofx.store import EventStore

workflows_app = typer.Typer(
    help="Workflows (DAGs of agent steps): validate, analyse, plan and run them.",
    no_args_is_help=True,
)


def _read_workflow(path: str) -> Any:
    """A workflow from native YAML/JSON or a WfFormat (WfCommons) trace; errors end the command."""
    from nofx.workflows import load_wfformat, parse_workflow

    try:
        text = Path(path).read_text()
        return load_wfformat(path) if '"schemaVersion"' in text else parse_workflow(text)
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc}") from None
    except NofxError as exc:
        raise fail(str(exc)) from None


@workflows_app.command("validate")
def workflows_validate(
    path: Annotated[str, typer.Argument(help="workflow YAML/JSON, or a WfFormat trace .json")],
) -> None:
    """Check a workflow: cycles, unknown dependencies, unbound inputs.

    Errors name the step and line. Exit code 0 when valid, 2 otherwise."""
    spec = _read_workflow(path)
    console.print(f"[green]valid[/]: {spec.name} ({len(spec.steps)} steps)")


@workflows_app.command("analyze")
def workflows_analyze(
    path: Annotated[
        str, typer.Argument(help="workflow YAML/JSON, or a WfFormat (WfCommons) trace .json")
    ],
    workers: Annotated[
        int, typer.Option(min=1, help="parallel workers for the makespan bound")
    ] = 4,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Critical path, makespan bound and planned makespan of a workflow on K workers.

    The lower bound is max(critical path, work / K); the plan is exact with CP-SAT for DAGs
    up to 400 steps, list scheduling beyond. Also parallelism per level. Traces use their
    measured runtimes."""
    from nofx.workflows import analyze
    from nofx.workflows.optimal import best_schedule

    spec = _read_workflow(path)
    result = analyze(spec, workers=workers)
    plan = best_schedule(spec, workers)
    planned = plan.makespan_s
    if as_json:
        console.print_json(
            json.dumps(
                {
                    **result.to_dict(),
                    "lower_bound_s": result.makespan_lower_bound_s,
                    "planned_makespan_s": planned,
                    "planned_by": plan.method,
                }
            )
        )
        return
    table = Table(title=f"{spec.name}: {result.steps} steps, {result.edges} edges")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row(
        "critical path", f"{result.critical_path_s:,.1f} s over {len(result.critical_path)} steps"
    )
    table.add_row("total work", f"{result.total_work_s:,.1f} s")
    table.add_row(
        f"makespan lower bound, {workers} workers", f"{result.makespan_lower_bound_s:,.1f} s"
    )
    table.add_row(f"planned makespan, {workers} workers", f"{planned:,.1f} s ({plan.method})")
    table.add_row("parallelism per level", " ".join(map(str, result.parallelism_profile)))
    table.add_row("estimated cost", f"${result.estimated_cost_usd:.4f}")
    table.add_row("bottlenecks", ", ".join(result.bottlenecks) or "-")
    console.print(table)


@workflows_app.command("plan")
def workflows_plan(
    goal: Annotated[str, typer.Argument(help="what the workflow is for, in words")],
    require: Annotated[
        list[str] | None, typer.Option(help="a capability the plan must use (repeatable)")
    ] = None,
    budget: Annotated[float | None, typer.Option(min=0.0, help="USD")] = None,
    deadline: Annotated[float | None, typer.Option(min=0.0, help="seconds")] = None,
) -> None:
    """Generate a workflow for a goal from the registered agents' capabilities.

    Prints YAML to save and run. Builtin planner; NOFX_PLANNER=llm for an OpenAI-compatible
    one."""
    from nofx.workflows.planner import PlanRequest, planner_from_env

    _, store = open_store()
    request = PlanRequest(
        goal=goal,
        available_capabilities=frozenset(AgentRegistry(store).capabilities("default")),
        required_capabilities=tuple(require or ()),
        budget_usd=budget,
        deadline_s=deadline,
    )
    try:
        spec = planner_from_env().plan(request)
    except NofxError as exc:
        raise fail(str(exc)) from None
    for note in request.notes:
        err.print(f"[dim]note:[/] {note}")
    # plain stdout, not the console: rich would wrap long lines and break the YAML
    sys.stdout.write(
        yaml.safe_dump(spec.model_dump(mode="json", exclude_defaults=True), sort_keys=False)
    )


def _simulate_missing_capabilities(store: EventStore, spec: Any) -> None:
    """Register one simulated agent per capability nobody offers, with the median of the
    steps' estimated durations as its latency (honestly labelled as a simulated replay).

    Replay agents never fail: a trace records runtimes, not failures (WfFormat has none), so
    a replay that failed at random would show the simulator's dice, not the workflow."""
    from statistics import median

    registry = AgentRegistry(store)
    offered = registry.capabilities("default")
    durations: dict[str, list[float]] = {}
    for step in spec.steps:
        if step.capability not in offered:
            durations.setdefault(step.capability, []).append(step.estimates.duration_s)
    for capability, seconds in sorted(durations.items()):
        registry.register(
            AgentSpec(
                name=f"replay-{capability}"[:120],
                capabilities=[{"name": capability, "proficiency": 3}],
                provider={
                    "kind": "simulated",
                    "config": {
                        "latency_median_ms": max(1.0, median(seconds) * 1000),
                        "latency_sigma": 0.1,
                        "error_rate": 0.0,
                        "rate_limit_rate": 0.0,
                        "skill": {capability: 1.0},
                    },
                },
                labels={"simulated": "true", "replay": "workflow"},
            )
        )
    if durations:
        err.print(f"[dim]simulated agents for {len(durations)} capabilities nobody offers[/]")


@workflows_app.command("run")
def workflows_run(
    path: Annotated[str, typer.Argument(help="workflow YAML/JSON, or a WfFormat trace .json")],
    time_scale: Annotated[
        float, typer.Option(help="multiply simulated latencies (0 = instant)")
    ] = 0.01,
    simulate_missing: Annotated[
        bool,
        typer.Option(
            help="replay: give every capability no agent offers a simulated agent whose "
            "latency is the steps' estimate (a WfFormat trace's measured runtime)"
        ),
    ] = False,
) -> None:
    """Submit the workflow as a session (pattern 'workflow') and run it to the end here."""
    spec = _read_workflow(path)
    _, store = open_store()
    if simulate_missing:
        _simulate_missing_capabilities(store, spec)
    runtime = make_runtime(store, time_scale=time_scale, seed=7)
    # a step estimated at minutes must not be cut off by the default one-minute call timeout
    longest = max(s.estimates.duration_s for s in spec.steps)
    runtime.config.call_timeout_s = max(runtime.config.call_timeout_s, 3 * longest)
    try:
        session = runtime.sessions.submit(
            SessionRequest(
                task=Task(prompt=spec.name, capability=spec.steps[0].capability),
                pattern=PatternName.WORKFLOW,
                workflow=spec.model_dump(mode="json"),
            )
        )
    except NofxError as exc:
        hint = "" if simulate_missing else "; to replay on simulated agents, add --simulate-missing"
        raise fail(f"{exc}{hint}") from None
    done = asyncio.run(runtime.run_session(session.session_id))
    events = runtime.sessions.events(session.session_id)
    table = Table(title=f"{spec.name}: {done.status.value}")
    for col in ("step", "outcome", "agent", "latency ms", "cost"):
        table.add_column(col)
    for e in events:
        if e.type in ("StepCompleted", "StepFailed", "StepSkipped"):
            p = e.payload
            table.add_row(
                str(p["step_id"]).removeprefix("wf/"),
                e.type.removeprefix("Step").lower(),
                str(p.get("gen_ai.agent.name", "")),
                f"{p.get('latency_ms') or 0:.0f}",
                f"${p.get('cost_usd') or 0:.4f}",
            )
    console.print(table)
    console.print(f"session {done.session_id}: {done.status.value}, cost ${done.cost_usd:.4f}")
    if done.status is not SessionStatus.SUCCEEDED:
        raise typer.Exit(1)
