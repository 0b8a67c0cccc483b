"""Simulated agent runs over weeks, with hidden ground truth, for failure-model benchmarks.

It is a simulation, said plainly, and it plays every run through the same seeded
``SimulatedProvider`` that serves the runtime. The fleet is shaped like production: strong
models that rarely fail on their own (provider errors and rate limits of a few in ten
thousand), and failures that have causes a control plane can see coming or not:

- context overflow: a prompt longer than the model's context window (known before the run);
- deadline-bound runs (a few percent) whose timeout is tight for the agent's usual latency;
- degraded releases: for a few hours an agent serves a worse model version (lower skill,
  many malformed answers), visible only through its recent outcomes;
- hard tasks on the weaker skills, and plain bad luck, which nothing predicts.

Every row carries ``true_failure_probability`` (what the simulator's hidden state implies),
so a benchmark can report how close a model comes to the best any model could do.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import polars as pl

from nofx.agents.base import AgentCall, AgentCallError
from nofx.agents.simulated import SimulatedProvider, success_probability
from nofx.domain import Agent

CAPABILITIES = ("code.generate", "code.review", "test.write", "text.summarize", "data.analyze")
TIER_SKILLS = (0.9995, 0.999, 0.998, 0.995, 0.99)
CONTEXT_WINDOWS = (8_192, 16_384, 32_768, 128_000)
LATENCY_MEDIANS_MS = (400.0, 800.0, 1500.0, 2500.0)
LATENCY_SIGMA = 0.35
DEFAULT_TIMEOUT_S = 60.0
DEADLINE_BOUND_SHARE = 0.03
DEGRADED_SKILL_FACTOR = 0.5
DEGRADED_ERROR_RATE = 0.3
# A second fleet shaped like a real LLM fleet, where price and skill go together. Prices are
# public list prices in USD per 1k tokens (input, output), 2024-25: small = gpt-4o-mini
# (0.15/0.60 per 1M) and gemini-1.5-flash (0.075/0.30); mid = gpt-4o (2.50/10) and
# claude-3.5-sonnet (3/15); large = claude-3-opus and o1 (15/75, 15/60): a 15-30x spread
# between neighbouring tiers' extremes, as the providers' price pages list them. Skills: small
# models fail hard prompts several times as often as large ones (public leaderboards: e.g.
# SWE-bench Verified, MMLU-Pro); with the simulator's p = skill ** (0.5 + 1.5 * complexity),
# a small model fails about 1 easy prompt in 12 and 1 hard one in 5, a large one 1 in 200.
TIERED_MODELS = (
    # (tier, skill range, price in, price out per 1k tokens, latency medians ms)
    ("small", (0.86, 0.92), (0.000075, 0.00015), (0.0003, 0.0006), (400.0, 800.0)),
    ("mid", (0.97, 0.985), (0.0025, 0.003), (0.010, 0.015), (800.0, 1500.0)),
    ("large", (0.993, 0.998), (0.015, 0.015), (0.060, 0.075), (1500.0, 2500.0)),
)
FLEETS = ("uniform", "tiered")


@dataclass(frozen=True)
class Degradation:
    """Agent ``agent_id`` serves a degraded release from ``start`` for ``hours``."""

    agent_id: str
    start: datetime
    hours: float

    def covers(self, agent_id: str, at: datetime) -> bool:
        return agent_id == self.agent_id and self.start <= at < self.start + timedelta(
            hours=self.hours
        )


def _agent(profile: dict, version: int, *, degraded: bool, created: datetime) -> Agent:
    skill = {c: (v * DEGRADED_SKILL_FACTOR if degraded else v) for c, v in profile["skill"].items()}
    return Agent(
        agent_id=profile["agent_id"],
        name=profile["agent_id"],
        version=version,
        created_at=created,
        updated_at=created,
        capabilities=[{"name": c, "proficiency": profile["proficiency"][c]} for c in CAPABILITIES],
        pricing={
            "input_per_1k_tokens": profile["price_in"],
            "output_per_1k_tokens": profile.get("price_out", 0.002),
        },
        provider={
            "kind": "simulated",
            "config": {
                "skill": skill,
                "latency_median_ms": profile["latency_ms"],
                "latency_sigma": LATENCY_SIGMA,
                "error_rate": DEGRADED_ERROR_RATE if degraded else profile["error_rate"],
                "rate_limit_rate": profile["rate_limit_rate"],
                "context_window_tokens": profile["context_window"],
            },
        },
        labels={"simulated": "true"},
        context_window_tokens=profile["context_window"],
    )


def _profiles(agents: int, rng: random.Random, fleet: str = "uniform") -> list[dict]:
    if fleet == "tiered":
        return _tiered_profiles(agents, rng)
    if fleet != "uniform":
        raise ValueError(f"unknown fleet {fleet!r}: use one of {FLEETS}")
    out = []
    for i in range(agents):
        tier = rng.choice(TIER_SKILLS)
        skill = {c: min(0.9999, tier * rng.uniform(0.985, 1.0)) for c in CAPABILITIES}
        out.append(
            {
                "agent_id": f"agt_{i:02d}",
                "skill": skill,
                # declared proficiency is coarse: it ranks skills but hides their exact value
                "proficiency": {
                    c: max(1, min(5, round((s - 0.95) / 0.01))) for c, s in skill.items()
                },
                "latency_ms": rng.choice(LATENCY_MEDIANS_MS),
                "context_window": rng.choice(CONTEXT_WINDOWS),
                "price_in": rng.choice((0.0001, 0.0008, 0.0025)),
                "error_rate": 0.0005,
                "rate_limit_rate": 0.0005,
            }
        )
    return out


def _tiered_profiles(agents: int, rng: random.Random) -> list[dict]:
    """Small, mid and large models in turn (so every tier is present), prices and skills
    drawn within the tier; windows, error and rate-limit rates as in the uniform fleet."""
    out = []
    for i in range(agents):
        _, skills, price_in, price_out, latencies = TIERED_MODELS[i % len(TIERED_MODELS)]
        tier = rng.uniform(*skills)
        skill = {c: min(0.9999, tier * rng.uniform(0.985, 1.0)) for c in CAPABILITIES}
        pick = rng.random()
        out.append(
            {
                "agent_id": f"agt_{i:02d}",
                "skill": skill,
                "proficiency": {
                    c: max(1, min(5, round((s - 0.95) / 0.01))) for c, s in skill.items()
                },
                "latency_ms": rng.choice(latencies),
                "context_window": rng.choice(CONTEXT_WINDOWS),
                "price_in": price_in[0] + pick * (price_in[1] - price_in[0]),
                "price_out": price_out[0] + pick * (price_out[1] - price_out[0]),
                "error_rate": 0.0005,
                "rate_limit_rate": 0.0005,
            }
        )
    return out


def true_failure_probability(
    profile: dict, agent: Agent, capability: str, complexity: float, tokens: int, timeout_s: float
) -> float:
    """What the simulator's hidden state implies for one run (rolls are independent)."""
    if tokens > profile["context_window"]:
        return 1.0
    config = agent.provider.config
    expected_ms = profile["latency_ms"] * (1.0 + complexity)
    z = math.log(timeout_s * 1000 / expected_ms) / LATENCY_SIGMA
    p_timeout = 1.0 - 0.5 * (1.0 + math.erf(z / math.sqrt(2)))
    p_ok = (
        (1 - profile["rate_limit_rate"])
        * (1 - p_timeout)
        * (1 - config["error_rate"])
        * success_probability(config["skill"][capability], complexity)
    )
    return 1.0 - p_ok


def simulated_runs(
    *,
    agents: int = 12,
    days: int = 28,
    runs_per_day: int = 3000,
    degradations: int = 10,
    seed: int = 7,
    start: datetime = datetime(2026, 1, 5, tzinfo=UTC),
    fleet: str = "uniform",
) -> tuple[pl.DataFrame, list[Degradation]]:
    """(one row per run in time order, the injected degraded releases)."""
    rng = random.Random(seed)
    profiles = _profiles(agents, rng, fleet)
    episodes = [
        Degradation(
            agent_id=rng.choice(profiles)["agent_id"],
            start=start + timedelta(hours=rng.uniform(0, days * 24)),
            hours=rng.uniform(3, 24),
        )
        for _ in range(degradations)
    ]
    healthy = {p["agent_id"]: _agent(p, 1, degraded=False, created=start) for p in profiles}
    degraded = {p["agent_id"]: _agent(p, 2, degraded=True, created=start) for p in profiles}
    provider = SimulatedProvider(seed=seed, time_scale=0.0)
    rows = []
    total = days * runs_per_day
    for n in range(total):
        at = start + timedelta(seconds=n * 86_400 / runs_per_day)
        profile = rng.choice(profiles)
        agent_id = profile["agent_id"]
        is_degraded = any(e.covers(agent_id, at) for e in episodes)
        agent = (degraded if is_degraded else healthy)[agent_id]
        capability = rng.choice(CAPABILITIES)
        complexity = min(1.0, rng.betavariate(2, 3))
        tokens = max(1, int(rng.lognormvariate(7.5, 1.0)))
        timeout_s = DEFAULT_TIMEOUT_S
        if rng.random() < DEADLINE_BOUND_SHARE:
            timeout_s = profile["latency_ms"] * math.exp(rng.uniform(-1.6, 1.6)) / 1000
        result = provider.outcome(
            agent,
            AgentCall(
                call_id=f"run-{n}",
                capability=capability,
                prompt="",
                input_tokens=tokens,
                complexity=complexity,
                timeout_s=timeout_s,
            ),
        )
        failed = isinstance(result, AgentCallError)
        rows.append(
            {
                "run_id": f"run-{n}",
                "occurred_at": at,
                "agent_id": agent_id,
                "capability": capability,
                "complexity": complexity,
                "input_tokens": tokens,
                "timeout_s": timeout_s,
                "context_window_tokens": profile["context_window"],
                "proficiency": profile["proficiency"][capability],
                "latency_ms": result.latency_ms,
                "failed": int(failed),
                "error_type": result.error_type if isinstance(result, AgentCallError) else None,
                "degraded": is_degraded,
                "true_failure_probability": true_failure_probability(
                    profile, agent, capability, complexity, tokens, timeout_s
                ),
            }
        )
    return pl.DataFrame(rows), episodes
