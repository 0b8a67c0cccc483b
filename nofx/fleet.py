"""A demo fleet of simulated agents shaped like a real model line-up.

Prices per 1k tokens and latencies are in the range of public model price
lists (large, mid and small tiers); skills are hidden ground truth for the
simulator. Every agent is labelled ``simulated`` so nobody mistakes it for a
real model.
"""

from __future__ import annotations

import random

from nofx.domain import AgentSpec, PatternName, SessionRequest, Task
from nofx.routing.autoscale import ScalingPolicy

DEMO_CAPABILITIES = (
    "code.generate",
    "code.review",
    "test.write",
    "text.summarize",
    "data.analyze",
    "research.search",
    "plan.decompose",
)

# (name, tier skill, input $/1k, output $/1k, median latency ms, capabilities with proficiency)
_TIERS = [
    ("atlas-large", 0.88, 0.0025, 0.0100, 1800, 5),
    ("atlas-mini", 0.74, 0.00015, 0.0006, 600, 3),
    ("orion-pro", 0.86, 0.0030, 0.0150, 2200, 5),
    ("orion-haiku", 0.78, 0.0008, 0.0040, 700, 4),
    ("vega-coder", 0.85, 0.0009, 0.0009, 1200, 4),
    ("nova-lite", 0.62, 0.0001, 0.0002, 400, 2),
]

_SPECIALITIES = {
    "vega-coder": ("code.generate", "code.review", "test.write"),
    "nova-lite": ("text.summarize", "research.search", "code.review"),
}


def demo_fleet(
    seed: int = 7, tenant_id: str = "default", max_concurrency: int = 16
) -> list[AgentSpec]:
    """Six agents from large to small tiers; ``max_concurrency`` is calls at once per replica."""
    rng = random.Random(seed)
    specs = []
    for name, skill, price_in, price_out, latency, level in _TIERS:
        caps = _SPECIALITIES.get(name, DEMO_CAPABILITIES)
        hidden = {c: round(min(0.99, max(0.3, skill + rng.uniform(-0.06, 0.04))), 3) for c in caps}
        specs.append(
            AgentSpec(
                name=name,
                tenant_id=tenant_id,
                capabilities=[{"name": c, "proficiency": level} for c in caps],
                pricing={"input_per_1k_tokens": price_in, "output_per_1k_tokens": price_out},
                provider={
                    "kind": "simulated",
                    "config": {
                        "skill": hidden,
                        "latency_median_ms": latency,
                        "latency_sigma": 0.45,
                        "error_rate": 0.02,
                        "rate_limit_rate": 0.01,
                    },
                },
                max_concurrency=max_concurrency,
                labels={"simulated": "true", "tier": name.split("-")[1]},
            )
        )
    return specs


def demo_requests(
    n: int, seed: int = 7, patterns: tuple[str, ...] = ("solo",)
) -> list[SessionRequest]:
    """A realistic burst: mostly small tasks, some hard ones, mixed capabilities and objectives."""
    rng = random.Random(seed + 1)
    out = []
    for i in range(n):
        capability = rng.choice(DEMO_CAPABILITIES)
        complexity = round(min(1.0, rng.betavariate(2, 2)), 3)
        out.append(
            SessionRequest(
                task=Task(
                    prompt=f"demo task {i}: {capability.replace('.', ' ')}",
                    capability=capability,
                    complexity=complexity,
                    input_tokens=int(rng.lognormvariate(6.5, 0.7)) + 50,
                ),
                pattern=rng.choice(patterns),
                optimize=rng.choice(["balanced", "balanced", "cost", "success", "latency"]),
                max_attempts=rng.choice([1, 2, 3, 3]),
            )
        )
    return out


def demo_pool_policy() -> ScalingPolicy:
    """Pools for the demo fleet: one replica to start, up to six, quick to react so a short
    demo shows scaling decisions (production pools keep the longer default cooldowns)."""
    return ScalingPolicy(
        min_replicas=1,
        max_replicas=6,
        target_utilisation=0.7,
        scale_up_cooldown_s=1.0,
        scale_down_cooldown_s=5.0,
    )


_DEMO_WORKFLOWS: list[tuple[str, dict[str, str]]] = [
    ("feature", {"feature": "CSV export on every dashboard table", "repo": "nofx"}),
    ("bugfix", {"issue": "sessions list drops the cursor on page 3"}),
    ("data_pipeline", {"change": "add a cost column to agent_step_calls"}),
    ("incident_response", {"incident": "p95 latency doubled", "service": "api"}),
    ("research_report", {"topic": "agent routing under budget limits"}),
]


def demo_workflow_requests(n: int, seed: int = 7) -> list[SessionRequest]:
    """Workflow sessions from the built-in templates, so the demo has DAG runs to look at."""
    from nofx.workflows.templates import load_template

    rng = random.Random(seed + 2)
    out = []
    for i in range(n):
        name, params = _DEMO_WORKFLOWS[i % len(_DEMO_WORKFLOWS)]
        spec = load_template(name, known_capabilities=None, **params)
        out.append(
            SessionRequest(
                task=Task(prompt=f"demo workflow {i}: {name}", capability=spec.steps[0].capability),
                pattern=PatternName.WORKFLOW,
                workflow=spec.model_dump(mode="json"),
                optimize=rng.choice(["balanced", "cost"]),
            )
        )
    return out
