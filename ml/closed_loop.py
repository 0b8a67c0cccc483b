"""The closed loop, measured: one fleet and one task stream routed with and without predictions.

A simulation, said plainly: the fleet of ``ml.fleet_runs`` (hidden skills, context windows,
deadline-bound calls, degraded releases). The request-time model is trained on the first
``train_days`` of that fleet's history (random routing, as ``simulated_runs`` plays it);
the learning routers start from the same statistics (that history replayed into them, as a
worker catches up from the store) and then route the next ``days`` of sessions. Four arms,
all with the same objective and the same score:

- ``open``: the router as the product had it before the loop closed: declared proficiency
  (as the prior mean), declared latency and price, the declared context window; it learns
  nothing and reads no model (what ``/agents/select`` did with "0 outcomes seen");
- ``posterior``: the product's router without a model (Beta posterior per agent and
  capability, learned online, same expected-cost-of-success score);
- ``predictive``: the same router with the request-time model as p(fail) (the product);
- ``oracle``: the same score with the simulator's true failure probability at that instant.

Sessions follow the runtime's retry policy in short: up to three attempts, a permanent error
(a prompt over the window) ends the session, any other failure moves to another agent. Every
attempt's roll is a pure function of (seed, agent, call id), and call ids are shared across
routers, so the same choice meets the same luck (common random numbers).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from ml.fleet_runs import (
    CAPABILITIES,
    DEADLINE_BOUND_SHARE,
    DEFAULT_TIMEOUT_S,
    Degradation,
    _agent,
    _profiles,
    simulated_runs,
    true_failure_probability,
)
from ml.request_failure import fit_compact
from ml.run_failure import add_history_features
from nofx.agents.base import AgentCall, AgentCallError, ErrorClass
from nofx.agents.simulated import SimulatedProvider
from nofx.domain import Agent
from nofx.routing.prediction import CompactFailureModel
from nofx.routing.router import SmartRouter
from nofx.routing.scoring import Estimate, cost_of_success, latency_of_success, score
from nofx.routing.selection import Objective, Outcome, SelectionRequest, estimated_cost

MAX_ATTEMPTS = 3
START = datetime(2026, 1, 5, tzinfo=UTC)


@dataclass(frozen=True)
class Task:
    at: datetime
    capability: str
    complexity: float
    input_tokens: int
    timeout_s: float


def task_stream(seed: int, start: datetime, days: int, per_day: int) -> list[Task]:
    """Tasks drawn as ``simulated_runs`` draws them (same mix of sizes and deadlines)."""
    rng = random.Random(seed * 7919 + 1)
    tasks = []
    for n in range(days * per_day):
        timeout = DEFAULT_TIMEOUT_S
        complexity = min(1.0, rng.betavariate(2, 3))
        capability = rng.choice(CAPABILITIES)
        tokens = max(1, int(rng.lognormvariate(7.5, 1.0)))
        if rng.random() < DEADLINE_BOUND_SHARE:
            timeout = (
                rng.choice((400.0, 800.0, 1500.0, 2500.0)) * math.exp(rng.uniform(-1.6, 1.6)) / 1000
            )
        at = start + timedelta(seconds=n * 86_400 / per_day)
        tasks.append(Task(at, capability, complexity, tokens, timeout))
    return tasks


class OracleRouter:
    """The same objective, with the simulator's hidden failure probability as p."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.at = START

    def choose(self, request: SelectionRequest, exclude: set[str]) -> Agent:
        best: tuple[float, Agent] | None = None
        estimates = []
        for agent in self.world.healthy.values():
            if agent.agent_id in exclude:
                continue
            served, profile = self.world.served(agent.agent_id, self.at)
            p_fail = true_failure_probability(
                profile,
                served,
                request.capability,
                request.complexity,
                request.input_tokens,
                request.timeout_s or DEFAULT_TIMEOUT_S,
            )
            e = Estimate(
                success=1.0 - p_fail,
                cost_usd=estimated_cost(agent, request.input_tokens),
                latency_ms=profile["latency_ms"] * (1 + request.complexity),
                latency_p95_ms=0.0,
                load=0.0,
            )
            estimates.append((agent, e))
        cheapest = min(cost_of_success(e) for _, e in estimates)
        fastest = min(latency_of_success(e) for _, e in estimates)
        for agent, e in estimates:
            value = score(e, request.optimize, cheapest, fastest)
            if best is None or value > best[0]:
                best = (value, agent)
        assert best is not None
        return best[1]


class World:
    """The fleet's hidden state: profiles, healthy and degraded versions, episodes."""

    def __init__(
        self, seed: int, agents: int, start: datetime, days: int, fleet: str = "uniform"
    ) -> None:
        rng = random.Random(seed)  # the same draws simulated_runs makes for its fleet
        self.profiles = {p["agent_id"]: p for p in _profiles(agents, rng, fleet)}
        episodes_rng = random.Random(seed * 104_729 + 3)
        self.episodes = [
            Degradation(
                agent_id=episodes_rng.choice(list(self.profiles)),
                start=start + timedelta(hours=episodes_rng.uniform(0, days * 24)),
                hours=episodes_rng.uniform(3, 24),
            )
            for _ in range(max(1, round(10 * days / 28)))
        ]
        self.healthy = {
            k: _agent(p, 1, degraded=False, created=START) for k, p in self.profiles.items()
        }
        self.degraded = {
            k: _agent(p, 2, degraded=True, created=START) for k, p in self.profiles.items()
        }

    def served(self, agent_id: str, at: datetime) -> tuple[Agent, dict[str, Any]]:
        bad = any(e.covers(agent_id, at) for e in self.episodes)
        return (self.degraded if bad else self.healthy)[agent_id], self.profiles[agent_id]


class SimClock:
    """The simulation's time in seconds, for the routers' breakers (cool-downs are in
    simulated time: a loop that plays a week in seconds must not keep breakers open all week)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def at(self, when: datetime) -> None:
        self.now = (when - START).total_seconds()


def warm(router: SmartRouter, history: pl.DataFrame, clock: SimClock) -> None:
    """Replay the training history into the router, as a worker catches up from the store."""
    for row in history.iter_rows(named=True):
        clock.at(row["occurred_at"])
        router.record(
            Outcome(
                row["agent_id"],
                row["capability"],
                not row["failed"],
                float(row["latency_ms"]),
                0.0,
                error_class="permanent"
                if row["error_type"] == "context_length_exceeded"
                else (None if not row["failed"] else "agent_fault"),
            )
        )


def route(
    name: str,
    world: World,
    tasks: list[Task],
    provider: SimulatedProvider,
    chooser: Any,
    router: SmartRouter | None,
    clock: SimClock,
    sessions: list[tuple[bool, float]] | None = None,
    objective: Objective = "balanced",
) -> dict[str, float]:
    """Route every task; ``sessions`` (when given) receives (succeeded, spent) per task, so
    routers can be compared on the same sessions."""
    ok = cost = latency = attempts = 0.0
    for i, task in enumerate(tasks):
        clock.at(task.at)
        exclude: set[str] = set()
        spent_before, ok_before = cost, ok
        for attempt in range(1, MAX_ATTEMPTS + 1):
            request = SelectionRequest(
                capability=task.capability,
                complexity=task.complexity,
                input_tokens=task.input_tokens,
                timeout_s=task.timeout_s,
                exclude=frozenset(exclude),
                optimize=objective,
            )
            if isinstance(chooser, OracleRouter):
                chooser.at = task.at
                agent = chooser.choose(request, exclude)
            else:
                ranked = chooser.rank(request, list(world.healthy.values()))
                if not ranked:
                    break
                agent = ranked[0].agent
            served, _ = world.served(agent.agent_id, task.at)
            result = provider.outcome(
                served,
                AgentCall(
                    call_id=f"s{i}/a{attempt}",
                    capability=task.capability,
                    prompt="",
                    input_tokens=task.input_tokens,
                    complexity=task.complexity,
                    timeout_s=task.timeout_s,
                ),
            )
            attempts += 1
            cost += result.cost_usd
            latency += result.latency_ms
            failed = isinstance(result, AgentCallError)
            if router is not None:
                router.record(
                    Outcome(
                        agent.agent_id,
                        task.capability,
                        not failed,
                        result.latency_ms,
                        result.cost_usd,
                        error_class=result.error_class.value
                        if isinstance(result, AgentCallError)
                        else None,
                        error_type=result.error_type
                        if isinstance(result, AgentCallError)
                        else None,
                    )
                )
            if not failed:
                ok += 1
                break
            if isinstance(result, AgentCallError) and result.error_class is ErrorClass.PERMANENT:
                break
            exclude.add(agent.agent_id)
        if sessions is not None:
            sessions.append((ok > ok_before, cost - spent_before))
    n = len(tasks)
    return {
        "success_rate": ok / n,
        "cost_usd": cost,
        "cost_per_success": cost / max(ok, 1.0),
        "attempts_per_session": attempts / n,
        "latency_ms_per_session": latency / n,
    }


ARMS = ("open", "posterior", "predictive", "oracle")


def like_for_like(
    base: list[tuple[bool, float]], ours: list[tuple[bool, float]]
) -> dict[str, float]:
    """Compare two routers on the same sessions, not on their own successful sets.

    Cost per successful session divides each router's spend by *its own* successes: a router
    that completes long, expensive sessions the other fails cheaply (a prompt over every cheap
    agent's window is rejected for free) looks worse per success while doing more. Two
    measures that do not mix task sets: the spend on the sessions both completed, and the
    spend on the whole stream (every failed session charged what it spent)."""
    both = [i for i, ((a, _), (b, _)) in enumerate(zip(base, ours, strict=True)) if a and b]
    base_both = sum(base[i][1] for i in both)
    ours_both = sum(ours[i][1] for i in both)
    base_all = sum(c for _, c in base)
    ours_all = sum(c for _, c in ours)
    return {
        "both_completed_sessions": len(both),
        "both_completed_cost_reduction": 1 - ours_both / base_both if base_both else 0.0,
        "stream_cost_reduction": 1 - ours_all / base_all if base_all else 0.0,
        "only_ours_completed": sum(b and not a for (a, _), (b, _) in zip(base, ours, strict=True)),
        "only_base_completed": sum(a and not b for (a, _), (b, _) in zip(base, ours, strict=True)),
    }


def comparison(
    results: dict[str, dict[str, float]],
    sessions: dict[str, list[tuple[bool, float]]],
    ours: str,
    base: str,
) -> dict[str, float]:
    """``ours`` against ``base`` on the same stream: cost per success, success, like for like."""
    mine, theirs = results[ours], results[base]
    return {
        "cost_per_success_reduction": 1 - mine["cost_per_success"] / theirs["cost_per_success"],
        "success_gain": mine["success_rate"] - theirs["success_rate"],
        **like_for_like(sessions[base], sessions[ours]),
    }


def closed_loop(
    seed: int,
    *,
    agents: int = 12,
    train_days: int = 14,
    days: int = 7,
    runs_per_day: int = 3000,
    model: CompactFailureModel | None = None,
    objective: Objective = "balanced",
    fleet: str = "uniform",
) -> dict[str, Any]:
    """One fleet, one task stream, four routers; each one's results, and the predictive
    router against the open loop (the headline), the posterior router (the model's own
    value) and the oracle (regret)."""
    history, _ = simulated_runs(
        agents=agents, days=train_days, runs_per_day=runs_per_day, seed=seed, fleet=fleet
    )
    if model is None:
        model = fit_compact(add_history_features(history).to_pandas())
    start = START + timedelta(days=train_days)
    world = World(seed, agents, start, days, fleet)
    tasks = task_stream(seed, start, days, runs_per_day)
    results: dict[str, dict[str, float]] = {}
    sessions: dict[str, list[tuple[bool, float]]] = {}
    for name in ARMS:
        provider = SimulatedProvider(seed=seed, time_scale=0.0)
        clock = SimClock()
        sessions[name] = []
        if name == "oracle":
            chooser: Any = OracleRouter(world)
            learner = None
        else:
            chooser = SmartRouter(
                seed=seed,
                predictor=(lambda: model) if name == "predictive" else None,
                clock=clock,
                # the open loop ranks on declarations only: the prior mean, never a sample
                explore=name != "open",
            )
            learner = None if name == "open" else chooser
            if learner is not None:
                warm(learner, history, clock)
        results[name] = route(
            name, world, tasks, provider, chooser, learner, clock, sessions[name], objective
        )
        results[name]["calls"] = float(sum(provider.calls.values()))
    oracle = results["oracle"]
    row: dict[str, Any] = {
        "seed": seed,
        "fleet": fleet,
        "objective": objective,
        "sessions": len(tasks),
        **{f"{k}_{m}": v for k, r in results.items() for m, v in r.items()},
    }
    for base in ("open", "posterior"):
        for metric, value in comparison(results, sessions, "predictive", base).items():
            row[f"vs_{base}_{metric}"] = value
    row["oracle_vs_open_cost_per_success_reduction"] = (
        1 - oracle["cost_per_success"] / results["open"]["cost_per_success"]
    )
    row["oracle_vs_posterior_cost_per_success_reduction"] = (
        1 - oracle["cost_per_success"] / results["posterior"]["cost_per_success"]
    )
    for name in ("open", "posterior", "predictive"):
        r = results[name]
        row[f"{name}_regret_cost_per_success"] = (
            r["cost_per_success"] / oracle["cost_per_success"] - 1
        )
        row[f"{name}_regret_success"] = oracle["success_rate"] - r["success_rate"]
    return row
