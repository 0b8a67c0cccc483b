"""Routing quality on a simulated fleet with hidden ground truth: cost, success, regret.

Every router sees the same tasks in the same order. Outcomes come from the
seeded simulator's pure ``outcome`` function (hidden skill per capability,
latency, price), so the oracle knows each agent's true success probability.
One attempt per task, so the router alone decides the result.
"""

from __future__ import annotations

import time
from typing import Any

from bench.report import parse_args, show, write
from nofx.agents import AgentCall, SimulatedProvider
from nofx.agents.simulated import SimulatedProfile, success_probability
from nofx.domain import Agent, utcnow
from nofx.fleet import demo_fleet, demo_requests
from nofx.routing.baselines import CheapestSelector, LowestLatencySelector, RoundRobinSelector
from nofx.routing.router import SmartRouter
from nofx.routing.selection import Outcome, SelectionRequest


def fleet() -> list[Agent]:
    now = utcnow()
    return [
        Agent(**spec.model_dump(), agent_id=f"agt_{spec.name}", created_at=now, updated_at=now)
        for spec in demo_fleet(seed=11)
    ]


def true_success(agent: Agent, capability: str, complexity: float) -> float:
    profile = SimulatedProfile.from_agent(agent)
    if capability not in profile.skill:
        return 0.0
    p = success_probability(profile.skill[capability], complexity)
    return p * (1 - profile.error_rate - profile.rate_limit_rate)


class Oracle:
    """Knows the hidden skills: the most likely to succeed, cheapest among near-equals."""

    def rank(self, request: SelectionRequest, candidates: list[Agent]) -> list[Any]:
        qualified = [a for a in candidates if a.proficiency(request.capability) >= 1]
        best = max(true_success(a, request.capability, request.complexity) for a in qualified)
        near = [
            a
            for a in qualified
            if true_success(a, request.capability, request.complexity) >= best - 0.01
        ]
        choice = min(
            near,
            key=lambda a: a.pricing.cost(request.input_tokens, int(request.input_tokens * 0.6)),
        )
        return [type("S", (), {"agent": choice})()]

    def record(self, outcome: Outcome) -> None:
        return None


def run(router: Any, agents: list[Agent], tasks: list, seed: int) -> dict[str, float]:
    provider = SimulatedProvider(seed=seed, time_scale=0.0)
    ok = cost = latency = 0.0
    start = time.perf_counter()
    for i, request in enumerate(tasks):
        task = request.task
        candidates = [a for a in agents if a.proficiency(task.capability) >= 1]
        selection = SelectionRequest(
            capability=task.capability,
            optimize="balanced",
            input_tokens=task.input_tokens,
            complexity=task.complexity,
        )
        agent = router.rank(selection, candidates)[0].agent
        result = provider.outcome(
            agent,
            AgentCall(f"t{i}", task.capability, task.prompt, task.input_tokens, task.complexity),
        )
        success = not isinstance(result, Exception)
        ok += success
        cost += result.cost_usd
        latency += result.latency_ms
        router.record(
            Outcome(
                agent.agent_id,
                task.capability,
                success,
                result.latency_ms,
                result.cost_usd,
                None if success else result.error_class.value,  # type: ignore[union-attr]
                error_type=None if success else result.error_type,  # type: ignore[union-attr]
            )
        )
    n = len(tasks)
    return {
        "success_rate": ok / n,
        "cost_usd": cost,
        "cost_per_success": cost / max(ok, 1),
        "mean_latency_ms": latency / n,
        "decide_us": (time.perf_counter() - start) / n * 1e6,
    }


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    n = 2_000 if args.quick else 20_000
    agents = fleet()
    tasks = [r for r in demo_requests(n, seed=5)]
    routers = {
        "smart": SmartRouter(seed=1),
        "round_robin": RoundRobinSelector(),
        "lowest_latency": LowestLatencySelector(),
        "cheapest": CheapestSelector(),
        "oracle": Oracle(),
    }
    results = {name: run(router, agents, tasks, seed=9) for name, router in routers.items()}
    show(
        f"routing on {n} tasks, one attempt each (hidden ground truth)",
        [{"router": k, **v} for k, v in results.items()],
    )
    smart, rr, oracle = results["smart"], results["round_robin"], results["oracle"]
    summary = {
        "tasks": n,
        "cost_reduction_vs_round_robin": 1 - smart["cost_usd"] / rr["cost_usd"],
        "success_rate": smart["success_rate"],
        "success_rate_round_robin": rr["success_rate"],
        "success_at_least_round_robin": smart["success_rate"] >= rr["success_rate"],
        "regret_vs_oracle": oracle["success_rate"] - smart["success_rate"],
        "success_rate_oracle": oracle["success_rate"],
        "success_rate_lowest_latency": results["lowest_latency"]["success_rate"],
        "success_rate_cheapest": results["cheapest"]["success_rate"],
        "cost_reduction_vs_lowest_latency": 1
        - smart["cost_usd"] / results["lowest_latency"]["cost_usd"],
        "routers": results,
    }
    write(args.json, "routing", args.quick, summary)


if __name__ == "__main__":
    main()
