"""Routing quality on a simulated fleet with hidden ground truth: cost, success, regret.

Every router sees the same tasks in the same order. Outcomes come from the
seeded simulator's pure ``outcome`` function (hidden skill per capability,
latency, price), so the oracle knows each agent's true success probability.
One attempt per task, so the router alone decides the result. The router's objective was
developed on DEVELOPMENT_SEEDS; the summary reports HELD_OUT_SEEDS, per seed and with 95%
intervals (a single seed swings cost per success by +-15%: Thompson sampling's early luck).

Selection speed at 10,000 agents of one capability, with the request-time failure model
loaded: the shortlisted router (ordered index, ``SHORTLIST`` scored per call) against the
same router scoring every candidate (what it did before), same requests in the same run,
per seed, with how often both choose the same agent.
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

from bench.report import parse_args, show, write
from nofx.agents import AgentCall, SimulatedProvider
from nofx.agents.simulated import SimulatedProfile, success_probability
from nofx.domain import Agent, utcnow
from nofx.fleet import demo_fleet, demo_requests
from nofx.routing.baselines import CheapestSelector, LowestLatencySelector, RoundRobinSelector
from nofx.routing.prediction import CompactFailureModel
from nofx.routing.router import SHORTLIST, SmartRouter
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


def big_fleet(n: int, rng: random.Random) -> list[Agent]:
    now = utcnow()
    return [
        Agent(
            agent_id=f"agt_{i:05d}",
            name=f"big-{i}",
            created_at=now,
            updated_at=now,
            capabilities=[{"name": "code.generate", "proficiency": rng.randint(1, 5)}],
            pricing={
                "input_per_1k_tokens": rng.choice((0.0001, 0.0008, 0.0025, 0.003)),
                "output_per_1k_tokens": rng.choice((0.0004, 0.002, 0.01)),
            },
            provider={
                "kind": "simulated",
                "config": {"latency_median_ms": rng.choice((400, 1500))},
            },
            context_window_tokens=rng.choice((8_192, 32_768, 128_000)),
            max_concurrency=8,
        )
        for i in range(n)
    ]


def failure_model() -> CompactFailureModel:
    """The request-time model as the product trains it, on a short simulated history."""
    from ml.fleet_runs import simulated_runs
    from ml.request_failure import fit_compact
    from ml.run_failure import add_history_features

    runs, _ = simulated_runs(days=3, runs_per_day=1500, seed=1)
    return fit_compact(add_history_features(runs).to_pandas())


def select_latency(seed: int, agents: int, requests: int, model: CompactFailureModel) -> dict:
    """p50/p95 ms of one rank() call at ``agents`` candidates: shortlisted vs full scan.

    Both routers see the same requests and the same outcome stream (one outcome per call,
    for a random agent), each in its own pass so one's garbage does not land on the other's
    clock. The full scan's own scores then say what the shortlist gave up: the score gap
    between the full scan's best and the shortlist's choice, at the same instant."""
    rng = random.Random(seed)
    fleet_ = big_fleet(agents, rng)
    stream = [
        (
            SelectionRequest(
                capability="code.generate",
                input_tokens=int(rng.lognormvariate(7.5, 1.0)) + 1,
                complexity=rng.random(),
                timeout_s=rng.choice((60.0, 60.0, 60.0, 2.0)),
            ),
            Outcome(rng.choice(fleet_).agent_id, "code.generate", rng.random() < 0.9, 900.0, 0.001),
        )
        for _ in range(requests)
    ]
    row: dict[str, Any] = {"seed": seed, "agents": agents, "requests": requests}
    choices: list[str] = []
    gaps: list[float] = []
    # timed: the product's router (Thompson sampling). Agreement: the shortlist against the
    # full scan both ranking on the posterior mean, since two independent Beta samples over
    # 10,000 agents would disagree by chance, not because of the shortlist
    for name, shortlist, explore in (
        ("shortlist", SHORTLIST, True),
        ("shortlist_mean", SHORTLIST, False),
        ("full_scan", None, False),
    ):
        router = SmartRouter(
            seed=seed, predictor=lambda: model, shortlist=shortlist, explore=explore
        )
        router.rank(stream[0][0], fleet_)  # builds the index once, as a long-lived worker has
        times, cpu = [], []
        for i, (request, outcome) in enumerate(stream):
            t0, c0 = time.perf_counter(), time.thread_time()
            ranked = router.rank(request, fleet_)
            cpu.append((time.thread_time() - c0) * 1000)
            times.append((time.perf_counter() - t0) * 1000)
            if name == "shortlist_mean":
                choices.append(ranked[0].agent.agent_id)
            elif name == "full_scan":
                scores = {s.agent.agent_id: s.score for s in ranked}
                gaps.append(ranked[0].score - scores[choices[i]])
            router.record(outcome)
        ordered, cpu_ordered = sorted(times), sorted(cpu)
        row[f"{name}_p50_ms"] = statistics.median(ordered)
        row[f"{name}_p95_ms"] = ordered[int(0.95 * (len(ordered) - 1))]
        # CPU time of the calling thread: what the call costs, without the waits a shared,
        # overloaded machine adds to wall time (both reported)
        row[f"{name}_cpu_p95_ms"] = cpu_ordered[int(0.95 * (len(cpu_ordered) - 1))]
    row["p95_ratio_full_scan_over_shortlist"] = row["full_scan_p95_ms"] / row["shortlist_p95_ms"]
    row["cpu_p95_ratio_full_scan_over_shortlist"] = (
        row["full_scan_cpu_p95_ms"] / row["shortlist_cpu_p95_ms"]
    )
    row["same_score_as_full_scan"] = sum(g < 1e-9 for g in gaps) / len(gaps)
    row["mean_score_gap"] = statistics.fmean(gaps)
    return row


# (task stream, simulator, router) seeds. The objective was developed on the first set only;
# the summary reports the held-out set (the first held-out triple is the one this benchmark
# always reported, kept for continuity).
DEVELOPMENT_SEEDS = tuple((s, s + 1000, s) for s in range(101, 111))
HELD_OUT_SEEDS = ((5, 9, 1), *((s, s + 1000, s) for s in range(301, 306)))


def interval95(values: list[float]) -> list[float]:
    """A t-interval over seeds (t for n-1 degrees of freedom, n <= 10)."""
    t = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26}
    if len(values) < 2:
        return [values[0], values[0]] if values else [0.0, 0.0]
    half = t.get(len(values) - 1, 2.0) * statistics.stdev(values) / len(values) ** 0.5
    m = statistics.fmean(values)
    return [m - half, m + half]


def demo_fleet_rows(seeds: tuple[tuple[int, int, int], ...], n: int) -> list[dict[str, Any]]:
    """Every router on the demo fleet, per seed; smart vs round robin on the same tasks."""
    agents = fleet()
    rows = []
    for task_seed, sim_seed, router_seed in seeds:
        tasks = list(demo_requests(n, seed=task_seed))
        routers = {
            "smart": SmartRouter(seed=router_seed),
            "round_robin": RoundRobinSelector(),
            "lowest_latency": LowestLatencySelector(),
            "cheapest": CheapestSelector(),
            "oracle": Oracle(),
        }
        results = {name: run(r, agents, tasks, seed=sim_seed) for name, r in routers.items()}
        smart, rr = results["smart"], results["round_robin"]
        rows.append(
            {
                "task_seed": task_seed,
                "sim_seed": sim_seed,
                "router_seed": router_seed,
                "cost_reduction_vs_round_robin": 1 - smart["cost_usd"] / rr["cost_usd"],
                "cost_per_success_ratio_vs_round_robin": smart["cost_per_success"]
                / rr["cost_per_success"],
                "success_gain_vs_round_robin": smart["success_rate"] - rr["success_rate"],
                "routers": results,
            }
        )
    return rows


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    n = 2_000 if args.quick else 20_000
    rows = demo_fleet_rows(HELD_OUT_SEEDS[:2] if args.quick else HELD_OUT_SEEDS, n)
    show(
        f"demo fleet, {n} tasks per seed, one attempt each (held-out seeds)",
        [{k: v for k, v in r.items() if k != "routers"} for r in rows],
    )
    results = rows[0]["routers"]  # the historical seed, every router
    show(
        f"routing on {n} tasks, seed {HELD_OUT_SEEDS[0]} (hidden ground truth)",
        [{"router": k, **v} for k, v in results.items()],
    )
    smart, rr, oracle = results["smart"], results["round_robin"], results["oracle"]

    def over_seeds(key: str) -> float:
        return statistics.fmean(r[key] for r in rows)

    summary = {
        "tasks": n,
        "held_out_seeds": [list(s) for s in HELD_OUT_SEEDS[: len(rows)]],
        "development_seeds": [list(s) for s in DEVELOPMENT_SEEDS],
        "held_out_cost_reduction_vs_round_robin": over_seeds("cost_reduction_vs_round_robin"),
        "held_out_cost_reduction_vs_round_robin_ci95": interval95(
            [r["cost_reduction_vs_round_robin"] for r in rows]
        ),
        "held_out_cost_per_success_ratio_vs_round_robin": over_seeds(
            "cost_per_success_ratio_vs_round_robin"
        ),
        "held_out_cost_per_success_ratio_vs_round_robin_ci95": interval95(
            [r["cost_per_success_ratio_vs_round_robin"] for r in rows]
        ),
        "held_out_success_gain_vs_round_robin": over_seeds("success_gain_vs_round_robin"),
        "held_out_success_gain_vs_round_robin_ci95": interval95(
            [r["success_gain_vs_round_robin"] for r in rows]
        ),
        "held_out_min_success_gain_vs_round_robin": min(
            r["success_gain_vs_round_robin"] for r in rows
        ),
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
        "demo_fleet_rows": rows,
    }
    model = failure_model()
    speed = [
        select_latency(seed, 10_000, 100 if args.quick else 300, model)
        for seed in ((1, 2) if args.quick else (1, 2, 3))
    ]
    show(f"rank() at 10,000 agents (shortlist {SHORTLIST} vs full scan)", speed)
    summary.update(
        select_p95_ms=max(r["shortlist_p95_ms"] for r in speed),
        select_cpu_p95_ms=max(r["shortlist_cpu_p95_ms"] for r in speed),
        select_cpu_p95_ms_full_scan=min(r["full_scan_cpu_p95_ms"] for r in speed),
        select_p95_ms_full_scan=min(r["full_scan_p95_ms"] for r in speed),
        select_p95_ratio_full_scan_over_shortlist=min(
            r["p95_ratio_full_scan_over_shortlist"] for r in speed
        ),
        select_same_score_as_full_scan=min(r["same_score_as_full_scan"] for r in speed),
        select_mean_score_gap=max(r["mean_score_gap"] for r in speed),
        select_rows=speed,
    )
    write(args.json, "routing", args.quick, summary)


if __name__ == "__main__":
    main()
