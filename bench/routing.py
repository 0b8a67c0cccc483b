"""Routing quality on a simulated fleet with hidden ground truth: cost, success, regret.

Every router sees the same tasks in the same order. Outcomes come from the
seeded simulator's pure ``outcome`` function (hidden skill per capability,
latency, price), so the oracle knows each agent's true success probability.
One attempt per task, so the router alone decides the result. The router's objective was
developed on DEVELOPMENT_SEEDS; the summary reports HELD_OUT_SEEDS, per seed and with 95%
intervals (a single seed swings cost per success by +-15%: Thompson sampling's early luck).

Selection speed at 10,000 agents, the bounded scan (ADR 0020: candidates visited best score
bound first until none left can enter the first ``SHORTLIST``) against the same router scoring
every candidate, same requests and outcomes in the same run, per seed, with how often both
choose an agent of the same score (exact by construction for the posterior-mean ranking).
Two fleets: one capability with the request-time failure model loaded (few distinct prices,
so many tied bounds), and bench.orchestration's (20 capabilities, 3 each, ~1,500 candidates
per capability, no model). ``python -m bench.routing --select-only [--quick]`` runs only these.
"""

from __future__ import annotations

import random
import statistics
import sys
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


def orchestration_fleet(n: int, rng: random.Random) -> tuple[list[str], dict[str, list[Agent]]]:
    """bench.orchestration's select fleet: 20 capabilities, each agent 3 of them, input pricing
    only; the candidate list per capability, as ``Runtime.candidates`` caches it."""
    now = utcnow()
    caps = [f"cap.c{i}" for i in range(20)]
    agents = [
        Agent(
            agent_id=f"agt_{i:05d}",
            name=f"a{i}",
            created_at=now,
            updated_at=now,
            capabilities=[
                {"name": c, "proficiency": rng.randint(1, 5)} for c in rng.sample(caps, 3)
            ],
            pricing={"input_per_1k_tokens": rng.uniform(0.0001, 0.01)},
        )
        for i in range(n)
    ]
    return caps, {c: [a for a in agents if a.proficiency(c) >= 1] for c in caps}


def select_latency(
    seed: int,
    agents: int,
    requests: int,
    model: CompactFailureModel | None,
    fleet_name: str,
    full_every: int = 1,
) -> dict:
    """p50/p95 ms of one rank() call at ``agents`` agents: bounded scan vs full scan.

    Every router sees the same requests and the same outcome stream (one outcome per call,
    for a random candidate), each in its own pass so one's garbage does not land on the
    other's clock. Agreement: the bounded posterior-mean ranking against the full scan's, by
    score (two Thompson samplers draw differently, so they are not compared call by call).
    The full scans (~0.5 s a call on the one-capability fleet) rank every ``full_every``-th
    request only (``--quick``: every 6th), and learn every outcome."""
    rng = random.Random(seed)
    if fleet_name == "one_capability":
        caps, by_cap = ["code.generate"], {"code.generate": big_fleet(agents, rng)}
    else:
        caps, by_cap = orchestration_fleet(agents, rng)
    stream = []
    for i in range(requests):
        capability = caps[i % len(caps)]
        request = SelectionRequest(
            capability=capability,
            input_tokens=int(rng.lognormvariate(7.5, 1.0)) + 1,
            complexity=rng.random(),
            timeout_s=rng.choice((60.0, 60.0, 60.0, 2.0)),
        )
        outcome = Outcome(
            rng.choice(by_cap[capability]).agent_id, capability, rng.random() < 0.9, 900.0, 0.001
        )
        stream.append((request, outcome))
    row: dict[str, Any] = {"fleet": fleet_name, "seed": seed, "agents": agents}
    row["candidates"] = len(by_cap[caps[0]])
    row["requests"] = requests
    row["full_scan_every"] = full_every
    choices: list[str] = []
    gaps: list[float] = []
    for name, shortlist, explore in (
        ("bounded", SHORTLIST, True),  # the product's router (Thompson sampling)
        ("bounded_mean", SHORTLIST, False),  # the API's (posterior mean)
        ("full_scan", None, False),
        ("full_scan_thompson", None, True),
    ):
        if name == "full_scan_thompson" and len(caps) == 1:
            continue  # a Beta draw for each of 10,000 agents per call: seconds, and no news
        router = SmartRouter(
            seed=seed,
            predictor=None if model is None else (lambda: model),
            shortlist=shortlist,
            explore=explore,
        )
        for capability in caps:  # the indexes a long-lived worker has built
            router.rank(SelectionRequest(capability), by_cap[capability])
        times, cpu = [], []
        for i, (request, outcome) in enumerate(stream):
            if name.startswith("full_scan") and i % full_every:
                router.record(outcome)
                continue
            candidates = by_cap[request.capability]
            t0, c0 = time.perf_counter(), time.thread_time()
            ranked = router.rank(request, candidates)
            # the pick's reasons, as the runtime reads them into AgentSelected (a router may
            # spell them out when read)
            _ = ranked[0].reasons[0]
            cpu.append((time.thread_time() - c0) * 1000)
            times.append((time.perf_counter() - t0) * 1000)
            if name == "bounded_mean":
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
        row[f"{name}_cpu_p50_ms"] = statistics.median(cpu_ordered)
        row[f"{name}_cpu_p95_ms"] = cpu_ordered[int(0.95 * (len(cpu_ordered) - 1))]
    row["p95_ratio_full_scan_over_bounded_mean"] = (
        row["full_scan_p95_ms"] / row["bounded_mean_p95_ms"]
    )
    if "full_scan_thompson_p95_ms" in row:
        row["p95_ratio_full_scan_thompson_over_bounded"] = (
            row["full_scan_thompson_p95_ms"] / row["bounded_p95_ms"]
        )
    row["same_score_as_full_scan"] = sum(abs(g) < 1e-9 for g in gaps) / len(gaps)
    row["max_score_gap"] = max(gaps)
    return row


def select_rows(quick: bool, model: CompactFailureModel) -> list[dict[str, Any]]:
    requests = 60 if quick else 300
    seeds = (1,) if quick else (1, 2, 3)
    every = 6 if quick else 1  # --quick: under a minute (a full scan of 10,000 is ~0.5 s)
    rows = [select_latency(s, 10_000, requests, model, "one_capability", every) for s in seeds]
    rows += [select_latency(s, 10_000, requests, None, "orchestration", every) for s in seeds]
    return rows


def select_summary(speed: list[dict[str, Any]]) -> dict[str, Any]:
    orchestration = [r for r in speed if r["fleet"] == "orchestration"]
    return {
        "select_p95_ms": max(r["bounded_p95_ms"] for r in speed),
        "select_cpu_p95_ms": max(r["bounded_cpu_p95_ms"] for r in speed),
        "select_mean_p95_ms": max(r["bounded_mean_p95_ms"] for r in speed),
        "select_p95_ms_full_scan": min(r["full_scan_p95_ms"] for r in speed),
        "select_cpu_p95_ms_full_scan": min(r["full_scan_cpu_p95_ms"] for r in speed),
        "select_orchestration_p95_ms": max(r["bounded_p95_ms"] for r in orchestration),
        "select_orchestration_cpu_p95_ms": max(r["bounded_cpu_p95_ms"] for r in orchestration),
        "select_same_score_as_full_scan": min(r["same_score_as_full_scan"] for r in speed),
        "select_rows": speed,
    }


def select_main(quick: bool, json_path: Any) -> None:
    import os

    speed = select_rows(quick, failure_model())
    show(f"rank() at 10,000 agents (bounded scan, first {SHORTLIST}, vs full scan)", speed)
    load = os.getloadavg()
    write(json_path, "routing_select", quick, {"load_average": list(load), **select_summary(speed)})


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
    select_only = "--select-only" in sys.argv
    if select_only:
        sys.argv.remove("--select-only")
    args = parse_args(__doc__.splitlines()[0])
    if select_only:
        select_main(args.quick, args.json)
        return
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
    speed = select_rows(args.quick, failure_model())
    show(f"rank() at 10,000 agents (bounded scan, first {SHORTLIST}, vs full scan)", speed)
    summary.update(select_summary(speed))
    write(args.json, "routing", args.quick, summary)


if __name__ == "__main__":
    main()
