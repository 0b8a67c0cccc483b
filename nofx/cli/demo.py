"""`nofx demo`: a simulated fleet, its history, the whole pipeline and a summary."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from nofx.cli.shared import (
    console,
    fail,
    make_runtime,
    open_store,
    run_with_progress,
    session_progress,
)
from nofx.domain import PatternName, SessionStatus
from nofx.registry import AgentRegistry
from nofx.settings import Settings


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
    settings, store = open_store()
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
    runtime = make_runtime(store, time_scale=time_scale, seed=seed)
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
        with session_progress() as progress:
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
        summary = run_with_progress(runtime, runtime.sessions.requested_count(), "sessions")
        ran, succeeded = summary.sessions, summary.succeeded
    cost = sum(s.cost_usd for s in ran)
    result: dict[str, Any] | None = None
    if pipeline:
        result = _materialize(settings, "materializing assets (raw_events -> dbt -> models)")
        if week is not None and week.waiting:
            # the waiting sessions were predicted before they ran: now their outcomes arrive
            later = make_runtime(store, time_scale=time_scale, seed=seed + 1)
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
        + ", ".join(f"{name} http://127.0.0.1:{port}" for name, port in settings.ui_ports.items())
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
        raise fail(
            f"the pipeline failed (exit {proc.returncode}); "
            "the sessions are safe in the store. "
            "Re-run `make demo` or `python -m dagster_project.materialize` to see the error.",
            code=proc.returncode,
        )
    return dict(json.loads(out.read_text()))
