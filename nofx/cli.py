"""The ``nofx`` command line: demo, agents, sessions, runtime, database and UIs."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import ValidationError as PydanticValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from nofx.domain import AgentSpec, PatternName, SessionRequest, SessionStatus, Task
from nofx.errors import NofxError
from nofx.registry import AgentRegistry
from nofx.settings import Settings
from nofx.store import EventStore

app = typer.Typer(
    help="NOFX: run fleets of AI agents, record every step as an event, learn from every run.\n\n"
    "State lives under NOFX_HOME (default ./.nofx): SQLite event store, DuckDB warehouse, "
    "MLflow and Dagster. Set NOFX_DATABASE_URL=postgresql://... to use PostgreSQL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
agents_app = typer.Typer(help="Register, list, update and remove agents.", no_args_is_help=True)
sessions_app = typer.Typer(help="Submit, list and inspect sessions.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
workflows_app = typer.Typer(
    help="Workflows: validate and analyse DAGs of agent steps.", no_args_is_help=True
)
keys_app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)
pools_app = typer.Typer(
    help="Agent pools: replicas that auto-scale on queue and latency; every decision recorded.",
    no_args_is_help=True,
)
app.add_typer(agents_app, name="agents")
app.add_typer(sessions_app, name="sessions")
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(workflows_app, name="workflows")
app.add_typer(workflows_app, name="workflow", hidden=True)  # the singular works too
app.add_typer(pools_app, name="pools")

console = Console()
err = Console(stderr=True)

DEFAULT_PORTS = {"api": 8000, "dagster": 3000, "streamlit": 8501, "mlflow": 5000}


def ui_ports() -> dict[str, int]:
    """Ports for `nofx up`; NOFX_<NAME>_PORT overrides each (e.g. NOFX_API_PORT=8080)."""
    return {
        name: int(os.environ.get(f"NOFX_{name.upper()}_PORT", port))
        for name, port in DEFAULT_PORTS.items()
    }


def _open_store(settings: Settings | None = None) -> tuple[Settings, EventStore]:
    settings = settings or Settings.from_env()
    settings.ensure_dirs()
    return settings, EventStore(settings.database_url)


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def _load_specs(path: str) -> list[dict[str, Any]]:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    data = yaml.safe_load(text)
    if isinstance(data, dict) and "agents" in data:
        data = data["agents"]
    return data if isinstance(data, list) else [data]


# -- agents ----------------------------------------------------------------------------------
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
    _, store = _open_store()
    registry = AgentRegistry(store)
    try:
        specs = [AgentSpec.model_validate(raw) for raw in _load_specs(path)]
    except (OSError, yaml.YAMLError) as exc:
        raise _fail(f"cannot read {path}: {exc}") from None
    except PydanticValidationError as exc:
        lines = [f"  {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise _fail("the agent spec is not valid:\n" + "\n".join(lines)) from None
    try:
        for spec in specs:
            agent = registry.register(spec)
            console.print(
                f"registered [bold]{agent.name}[/] as {agent.agent_id} (version {agent.version})"
            )
    except NofxError as exc:
        raise _fail(str(exc)) from None


@agents_app.command("list")
def agents_list(
    capability: Annotated[
        str | None, typer.Option(help="only agents offering this capability")
    ] = None,
    tenant: Annotated[str | None, typer.Option(help="only this tenant")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """List registered agents."""
    _, store = _open_store()
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
    _, store = _open_store()
    try:
        agent = AgentRegistry(store).deregister(agent_id)
    except NofxError as exc:
        raise _fail(str(exc)) from None
    console.print(f"deregistered {agent.name} ({agent_id})")


# -- pools -----------------------------------------------------------------------------------
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
    """Give an agent a pool: calls are capped at replicas x max_concurrency, and runtimes scale
    the pool between --min and --max on its queue (and p95 latency, if a target is set)."""
    from nofx.pools import PoolService
    from nofx.routing.autoscale import PolicyError, ScalingPolicy

    _, store = _open_store()
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
        raise _fail(str(exc)) from None
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

    _, store = _open_store()
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


# -- sessions --------------------------------------------------------------------------------
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
    _, store = _open_store()
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
        raise _fail(
            "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        ) from None
    except NofxError as exc:
        raise _fail(str(exc)) from None
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
    _, store = _open_store()
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
    _, store = _open_store()
    from nofx.sessions import SessionService

    service = SessionService(store, AgentRegistry(store))
    try:
        session = service.get(session_id)
    except NofxError as exc:
        raise _fail(str(exc)) from None
    console.print_json(session.model_dump_json())
    table = Table(title="events")
    for col in ("seq", "type", "at", "detail"):
        table.add_column(col)
    for e in service.events(session_id):
        detail = e.payload.get("gen_ai.agent.name") or e.payload.get("error.type") or ""
        table.add_row(str(e.seq), e.type, e.occurred_at.strftime("%H:%M:%S.%f")[:-3], str(detail))
    console.print(table)


# -- runtime ---------------------------------------------------------------------------------
def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("ok {task.fields[ok]}  failed {task.fields[failed]}"),
        TimeElapsedColumn(),
        console=console,
    )


def _make_runtime(store: EventStore, *, time_scale: float, seed: int) -> Any:
    from nofx.runtime import Runtime, RuntimeConfig

    return Runtime(store, config=RuntimeConfig(time_scale=time_scale, seed=seed))


def _run_with_progress(runtime: Any, total: int, label: str) -> Any:
    with _progress() as progress:
        bar = progress.add_task(label, total=total, ok=0, failed=0)
        counts = {"ok": 0, "failed": 0}

        def done(session: Any) -> None:
            counts["ok" if session.status is SessionStatus.SUCCEEDED else "failed"] += 1
            progress.update(bar, advance=1, ok=counts["ok"], failed=counts["failed"])

        return asyncio.run(runtime.run_pending(on_done=done))


@app.command("run")
def run(
    time_scale: Annotated[
        float, typer.Option(help="multiply simulated latencies (0 = no sleeping)")
    ] = 1.0,
    seed: Annotated[int, typer.Option()] = 7,
) -> None:
    """Run every requested session once, then exit."""
    _, store = _open_store()
    runtime = _make_runtime(store, time_scale=time_scale, seed=seed)
    pending = runtime.sessions.requested_count()
    summary = _run_with_progress(runtime, pending, "sessions")
    console.print(
        f"ran {len(summary.sessions)} sessions: "
        f"{summary.succeeded} succeeded, {summary.failed} failed"
    )


@app.command("worker")
def worker(
    poll_s: Annotated[
        float,
        typer.Option(help="longest idle wait; PostgreSQL wakes workers at once via LISTEN/NOTIFY"),
    ] = 1.0,
    time_scale: Annotated[
        float, typer.Option(help="multiply simulated latencies (0 = no sleeping)")
    ] = 1.0,
    seed: Annotated[int, typer.Option()] = 7,
    lease_s: Annotated[
        float, typer.Option(help="seconds a claimed session stays ours without a heartbeat")
    ] = 60.0,
    concurrency: Annotated[
        int, typer.Option(min=1, help="sessions run at once by this worker")
    ] = 256,
    worker_id: Annotated[
        str | None, typer.Option(help="name in events and leases (default host:pid)")
    ] = None,
    max_idle_polls: Annotated[
        int | None, typer.Option(help="exit after this many empty polls")
    ] = None,
) -> None:
    """Run sessions until SIGTERM, claiming work with leases so several workers can share a store.

    A worker that dies leaves leases that expire after --lease-s; the others then
    resume its sessions from their events, without repeating completed steps.
    """
    _, store = _open_store()
    runtime = _make_runtime(store, time_scale=time_scale, seed=seed)
    runtime.config.lease_s = lease_s
    runtime.config.concurrency = concurrency
    if worker_id:
        runtime.config.worker_id = worker_id
    from nofx.store.notify import WorkSignal

    wake = WorkSignal(store.engine)
    stop = False

    def _stop(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    idle = 0
    console.print(f"worker {runtime.config.worker_id} polling {store.dialect} store")
    while not stop:
        summary = asyncio.run(runtime.run_pending(should_stop=lambda: stop))
        if summary.sessions:
            idle = 0
            console.print(f"ran {len(summary.sessions)} sessions ({summary.succeeded} ok)")
        else:
            idle += 1
            if max_idle_polls is not None and idle >= max_idle_polls:
                break
            if wake.wait(poll_s):
                idle = 0
    wake.close()


# -- workflows -------------------------------------------------------------------------------
def _read_workflow(path: str) -> Any:
    """A workflow from native YAML/JSON or a WfFormat (WfCommons) trace; errors end the command."""
    from nofx.workflows import load_wfformat, parse_workflow

    try:
        text = Path(path).read_text()
        return load_wfformat(path) if '"schemaVersion"' in text else parse_workflow(text)
    except OSError as exc:
        raise _fail(f"cannot read {path}: {exc}") from None
    except NofxError as exc:
        raise _fail(str(exc)) from None


@workflows_app.command("validate")
def workflows_validate(
    path: Annotated[str, typer.Argument(help="workflow YAML/JSON, or a WfFormat trace .json")],
) -> None:
    """Check a workflow: cycles, unknown dependencies, unbound inputs (errors name the step
    and line). Exit code 0 when valid, 2 otherwise."""
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
    """Critical path, makespan lower bound max(critical path, work / K), parallelism per level,
    and the planned makespan for K workers (exact with CP-SAT for DAGs up to 400 steps, list
    scheduling beyond; measured runtimes for traces)."""
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
    """Generate a workflow for a goal with the registered agents' capabilities (builtin
    planner; NOFX_PLANNER=llm for an OpenAI-compatible one). Prints YAML to save and run."""
    from nofx.workflows.planner import PlanRequest, planner_from_env

    _, store = _open_store()
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
        raise _fail(str(exc)) from None
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
    _, store = _open_store()
    if simulate_missing:
        _simulate_missing_capabilities(store, spec)
    runtime = _make_runtime(store, time_scale=time_scale, seed=7)
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
        raise _fail(f"{exc}{hint}") from None
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


# -- API keys --------------------------------------------------------------------------------
@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="what the key is for, e.g. ci-pipeline")],
    scope: Annotated[list[str], typer.Option(help="read, write or admin (repeat for several)")],
    tenant: Annotated[str, typer.Option()] = "default",
    rate: Annotated[float, typer.Option(help="requests per second")] = 50.0,
    burst: Annotated[float, typer.Option(help="requests allowed at once")] = 100.0,
) -> None:
    """Create an API key. The secret is printed once and stored only as a hash."""
    from nofx.security import ApiKeyService, Scope

    _, store = _open_store()
    try:
        scopes = {Scope(s) for s in scope}
    except ValueError:
        raise _fail(f"unknown scope in {scope}: use read, write or admin") from None
    try:
        issued = ApiKeyService(store).create(tenant, name, scopes, rate_per_s=rate, burst=burst)
    except NofxError as exc:
        raise _fail(str(exc)) from None
    console.print(
        f"key {issued.key.key_id} for tenant {tenant} ({', '.join(sorted(scope))}); store it now:"
    )
    console.print(issued.plaintext, soft_wrap=True, highlight=False)


@keys_app.command("list")
def keys_list(tenant: Annotated[str | None, typer.Option()] = None) -> None:
    """List keys (never their secrets)."""
    from nofx.security import ApiKeyService

    _, store = _open_store()
    table = Table(title="API keys")
    table.add_column("id", no_wrap=True)
    for col in ("tenant", "name", "scopes", "rate/s", "created", "revoked"):
        table.add_column(col)
    for k in ApiKeyService(store).list(tenant):
        table.add_row(
            k.key_id,
            k.tenant_id,
            k.name,
            ",".join(sorted(s.value for s in k.scopes)),
            f"{k.rate_per_s:g}",
            k.created_at.strftime("%Y-%m-%d %H:%M"),
            k.revoked_at.strftime("%Y-%m-%d %H:%M") if k.revoked_at else "",
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke a key; requests with it are refused at once."""
    from nofx.security import ApiKeyService

    _, store = _open_store()
    try:
        ApiKeyService(store).revoke(key_id)
    except NofxError as exc:
        raise _fail(str(exc)) from None
    console.print(f"revoked {key_id}")


def local_admin_key(settings: Settings, store: EventStore) -> Path:
    """For `nofx up` on the embedded default: one admin key in NOFX_HOME (mode 600)."""
    from nofx.security import ApiKeyService, Scope

    path = settings.home / "admin-api-key"
    if not path.exists():
        issued = ApiKeyService(store).create(
            "default", "local-admin", {Scope.ADMIN}, rate_per_s=1000, burst=2000
        )
        path.write_text(issued.plaintext + "\n")
        path.chmod(0o600)
    return path


# -- database --------------------------------------------------------------------------------
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


# -- demo ------------------------------------------------------------------------------------
def _summary_table(
    sessions_run: int, succeeded: int, cost: float, pipeline: dict[str, Any] | None
) -> Table:
    table = Table(title="NOFX demo summary", show_header=True)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("sessions run", str(sessions_run))
    rate = succeeded / sessions_run if sessions_run else 0.0
    table.add_row("success rate (runtime)", f"{rate:.1%}")
    table.add_row("total cost (simulated)", f"${cost:.4f}")
    if pipeline:
        table.add_row("raw events in warehouse", str(pipeline.get("raw_events_rows", "?")))
        table.add_row("sessions in agent_sessions mart", str(pipeline.get("agent_sessions", "?")))
        if pipeline.get("success_rate") is not None:
            table.add_row("success rate (mart)", f"{pipeline['success_rate']:.1%}")
        if pipeline.get("orchestration_failure_rate") is not None:
            table.add_row(
                "failures: orchestration (target < 1%) / task",
                f"{pipeline['orchestration_failure_rate']:.2%} / "
                f"{pipeline['task_failure_rate']:.1%}",
            )
        model = pipeline.get("model") or {}
        if model:
            table.add_row(
                "model", f"{model.get('name')} v{model.get('version')} @{model.get('alias')}"
            )
            for key, value in sorted((model.get("metrics") or {}).items()):
                table.add_row(
                    f"  {key}", f"{value:.3f}" if isinstance(value, float) else str(value)
                )
        checks = pipeline.get("checks") or {}
        if checks:
            passed = sum(1 for ok in checks.values() if ok)
            table.add_row("data-quality checks passed", f"{passed}/{len(checks)}")
        if "open_alerts" in pipeline:
            table.add_row("open alerts (Alerts page, /api/v1/alerts)", str(pipeline["open_alerts"]))
            evaluated = pipeline.get("rules_evaluated") or []
            table.add_row("alert rules evaluated (ever)", ", ".join(evaluated) or "none")
            track_c = pipeline.get("track_c") or {}
            if track_c:
                empty = sorted(name for name, rows in track_c.items() if not rows)
                table.add_row(
                    "Track C tables with rows",
                    f"{len(track_c) - len(empty)}/{len(track_c)}"
                    + (f" (empty: {', '.join(empty)})" if empty else ""),
                )
            table.add_row(
                "recommendations / est. savings",
                f"{pipeline.get('recommendations', 0)} / "
                f"${pipeline.get('estimated_savings_usd', 0.0):.4f}",
            )
    return table


@app.command("demo")
def demo(
    sessions: Annotated[
        int, typer.Option(min=1, max=100_000, help="how many sessions to run")
    ] = 300,
    seed: Annotated[int, typer.Option()] = 7,
    time_scale: Annotated[float, typer.Option(help="multiply simulated latencies")] = 0.01,
    pipeline: Annotated[
        bool, typer.Option(help="materialize the Dagster assets afterwards")
    ] = True,
    days: Annotated[
        int,
        typer.Option(
            min=0,
            max=60,
            help="days of simulated history the sessions are spread over, ending now "
            "(0: run them all now)",
        ),
    ] = 8,
) -> None:
    """Register a simulated fleet, run sessions, materialize every asset, print a summary."""
    settings, store = _open_store()
    from nofx.fleet import demo_fleet, demo_requests, demo_workflow_requests

    registry = AgentRegistry(store)
    existing = {a.name for a in registry.list()}
    # a week of history runs a few sessions an hour: small replicas make the spike scale
    per_replica = 4 if days else 16
    fleet = [
        spec for spec in demo_fleet(seed, max_concurrency=per_replica) if spec.name not in existing
    ]
    for spec in fleet:
        registry.register(spec)
    console.print(
        f"fleet: {len(existing) + len(fleet)} simulated agents ({len(fleet)} new) — "
        "[italic]simulated: no model service is called[/]"
    )
    from nofx.fleet import demo_pool_policy
    from nofx.pools import PoolService

    pools = PoolService(store)
    for agent in registry.list():
        if agent.labels.get("simulated") == "true" and pools.find(agent.agent_id) is None:
            pools.configure(agent, demo_pool_policy())
    runtime = _make_runtime(store, time_scale=time_scale, seed=seed)
    runtime.config.autoscale_interval_s = 0.5  # a short demo: look at the queues often
    patterns = tuple(
        p.value for p in runtime.patterns if p not in (PatternName.AUTO, PatternName.WORKFLOW)
    ) or ("solo",)
    workflows = demo_workflow_requests(max(1, sessions // 30), seed=seed)
    if PatternName.WORKFLOW not in runtime.patterns:
        workflows = []
    plain = demo_requests(sessions - len(workflows), seed=seed, patterns=patterns)
    week = None
    if days:
        from nofx import demo_history, simclock

        demo_history.define_business_metric(store)
        requests = demo_history.interleave(plain, workflows)
        waiting = min(30, sessions // 10) if pipeline else 0
        console.print(
            f"simulating {days} days of history on a simulated clock "
            f"({len(requests) - waiting} sessions hour by hour, {waiting} left waiting)"
        )
        with _progress() as progress:
            bar = progress.add_task("sessions", total=len(requests) - waiting, ok=0, failed=0)
            counts = {"ok": 0, "failed": 0}

            def done(session: Any) -> None:
                counts["ok" if session.status is SessionStatus.SUCCEEDED else "failed"] += 1
                progress.update(bar, advance=1, ok=counts["ok"], failed=counts["failed"])

            week = asyncio.run(
                demo_history.simulate_week(
                    store, runtime, requests, days=days, seed=seed, waiting=waiting, on_done=done
                )
            )
        simclock.reset()
        ran, succeeded = week.sessions, week.succeeded
    else:
        for request in [*plain, *workflows]:
            runtime.sessions.submit(request)
        summary = _run_with_progress(runtime, runtime.sessions.requested_count(), "sessions")
        ran, succeeded = summary.sessions, summary.succeeded
    cost = sum(s.cost_usd for s in ran)
    result: dict[str, Any] | None = None
    if pipeline:
        result = _materialize(settings, "materializing assets (raw_events -> dbt -> models)")
        if week is not None and week.waiting:
            # the waiting sessions were predicted before they ran: now their outcomes arrive
            later = _make_runtime(store, time_scale=time_scale, seed=seed + 1)
            outcome = asyncio.run(later.run_pending())
            ran = [*ran, *outcome.sessions]
            succeeded += outcome.succeeded
            cost += sum(s.cost_usd for s in outcome.sessions)
            result = _materialize(
                settings,
                f"{len(outcome.sessions)} predicted sessions ran: scoring and alerting again",
                stages="ingest,transform,operations",
            )
    console.print(_summary_table(len(ran), succeeded, cost, result))
    if week is not None:
        console.print(
            f"history: {week.hours} simulated hours from {week.start:%Y-%m-%d %H:00} UTC, "
            f"{week.adaptations} workflow adaptations, {week.api_requests} API requests"
        )
    console.print(
        "open the UIs with [bold]make up[/]: "
        + ", ".join(f"{name} http://127.0.0.1:{port}" for name, port in ui_ports().items())
    )


def _materialize(settings: Settings, title: str, stages: str | None = None) -> dict[str, Any]:
    out = settings.home / "demo-summary.json"
    console.print(f"[bold]{title}[/] ...")
    command = [sys.executable, "-m", "dagster_project.materialize", "--json", str(out)]
    proc = subprocess.run(
        command + (["--stages", stages] if stages else []),
        env={**os.environ, "NOFX_HOME": str(settings.home)},
        check=False,
    )
    if proc.returncode != 0:
        raise _fail(
            f"the pipeline failed (exit {proc.returncode}); "
            "the sessions are safe in the store. "
            "Re-run `make demo` or `python -m dagster_project.materialize` to see the error.",
            code=proc.returncode,
        )
    return dict(json.loads(out.read_text()))


# -- UIs -------------------------------------------------------------------------------------
def ui_commands(settings: Settings, python: str = sys.executable) -> dict[str, list[str]]:
    """The four servers `nofx up` starts, all on loopback."""
    bindir = Path(python).parent
    ports = ui_ports()
    return {
        "api": [
            python,
            "-m",
            "uvicorn",
            "nofx.api.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(ports["api"]),
            # SIGTERM stops the API within 5 s even with event streams open (issue 10)
            "--timeout-graceful-shutdown",
            "5",
        ],
        "dagster": [
            str(bindir / "dagster"),
            "dev",
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(ports["dagster"]),
        ],
        "streamlit": [
            python,
            "-m",
            "streamlit",
            "run",
            "dashboards/app.py",
            "--server.headless",
            "true",
            "--server.address",
            "127.0.0.1",
            "--server.port",
            str(ports["streamlit"]),
            # no usage statistics (they fail offline) and no "Deploy" menu for executives
            "--browser.gatherUsageStats",
            "false",
            "--client.toolbarMode",
            "minimal",
        ],
        "mlflow": [
            str(bindir / "mlflow"),
            "server",
            "--backend-store-uri",
            settings.mlflow_tracking_uri,
            "--artifacts-destination",
            str(settings.mlflow_artifact_root),
            "--host",
            "127.0.0.1",
            "--port",
            str(ports["mlflow"]),
        ],
    }


LOCAL_DAGSTER_INSTANCE = """\
# Written by `nofx up` for the embedded default (SQLite under NOFX_HOME/dagster).
# One run at a time: the DuckDB warehouse has a single writer, so refreshes queue up.
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 1
# A refresh that meets a dashboard's read lock on the warehouse is tried again.
run_retries:
  enabled: true
  max_retries: 2
"""


def ensure_dagster_instance(dagster_home: Path) -> Path:
    """A dagster.yaml for `nofx up`: telemetry off and one run at a time, unless the operator
    already chose a run coordinator (e.g. deploy/dagster/dagster.yaml on PostgreSQL)."""
    path = dagster_home / "dagster.yaml"
    text = path.read_text() if path.exists() else ""
    if "telemetry:" not in text:
        text += ("" if not text or text.endswith("\n") else "\n") + "telemetry:\n  enabled: false\n"
    if "run_coordinator:" not in text and "run_retries:" not in text:
        text += LOCAL_DAGSTER_INSTANCE
    path.write_text(text)
    return path


def worker_command(time_scale: float, python: str = sys.executable) -> list[str]:
    """The `nofx worker` that `nofx up` runs beside the UIs, so requested sessions run."""
    return [python, "-m", "nofx.cli", "worker", "--time-scale", str(time_scale)]


@app.command("up")
def up(
    worker_time_scale: Annotated[
        float,
        typer.Option(help="the worker's multiplier on simulated latencies (0 = no sleeping)"),
    ] = 1.0,
    worker: Annotated[
        bool, typer.Option(help="run a `nofx worker` so requested sessions run on their own")
    ] = True,
) -> None:
    """Serve the API, Dagster UI, Streamlit dashboards and MLflow UI, and run a worker,
    until Ctrl-C.

    Sessions requested over HTTP are run by the worker; Dagster's new-events sensor then
    refreshes the warehouse, models' accuracy and alerts, and the dashboards show them.
    """
    settings = Settings.from_env()
    settings.ensure_dirs()
    ports = ui_ports()
    env = {
        **os.environ,
        "NOFX_HOME": str(settings.home),
        "DAGSTER_HOME": str(settings.dagster_home),
        "NOFX_API_URL": os.environ.get("NOFX_API_URL", f"http://127.0.0.1:{ports['api']}"),
    }
    # the store (and its migrations) before anything else opens it
    key_path = local_admin_key(settings, EventStore(settings.database_url))
    ensure_dagster_instance(settings.dagster_home)
    commands = ui_commands(settings)
    if worker:
        commands["worker"] = worker_command(worker_time_scale)
    procs = {
        name: subprocess.Popen(cmd, env=env, start_new_session=True)
        for name, cmd in commands.items()
    }
    table = Table(title="NOFX is up (Ctrl-C to stop)")
    table.add_column("service")
    table.add_column("url")
    for name, port in ports.items():
        table.add_row(name, f"http://127.0.0.1:{port}" + ("/docs" if name == "api" else ""))
    if worker:
        table.add_row("worker", "runs requested sessions (`nofx worker`)")
    console.print(table)
    console.print(
        f"API key (admin, tenant default): in {key_path}; send 'Authorization: Bearer <key>'"
    )

    def _terminate(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    try:
        while all(p.poll() is None for p in procs.values()):
            time.sleep(1)
        dead = [n for n, p in procs.items() if p.poll() is not None]
        err.print(f"[red]{', '.join(dead)} stopped; shutting the rest down[/]")
    except KeyboardInterrupt:
        pass
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


@app.command("where")
def where() -> None:
    """Where state lives (store, warehouse, MLflow, Dagster)."""
    s = Settings.from_env()
    for key, value in (
        ("NOFX_HOME", s.home),
        ("store", s.database_url),
        ("warehouse", s.warehouse_path),
        ("mlflow", s.mlflow_tracking_uri),
        ("DAGSTER_HOME", s.dagster_home),
    ):
        console.print(f"{key:10} {value}")
    if shutil.which("dagster") is None:
        console.print("[yellow]dagster is not on PATH: run `make demo` or activate .venv[/]")


if __name__ == "__main__":  # pragma: no cover
    app()
