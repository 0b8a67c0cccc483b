"""Real data for the data-platform tests: a simulated fleet and sessions run in waves.

Agents get hidden skills from weak to strong and most sessions allow a single attempt, so
both outcomes occur; waves make agents' prior success rates differ between sessions.
"""

from __future__ import annotations

import asyncio
import random

from nofx.domain import SessionRequest, Task
from nofx.registry import AgentRegistry
from nofx.runtime import Runtime, RuntimeConfig
from nofx.store import EventStore
from tests.conftest import fleet_specs

CAPABILITIES = ("code.generate", "code.review")


def register_mixed_fleet(registry: AgentRegistry) -> list:
    agents = []
    for index, spec in enumerate(fleet_specs()):
        level = 1 + index % 5
        config = dict(
            spec.provider.config, skill={c.name: 0.3 + 0.12 * level for c in spec.capabilities}
        )
        provider = spec.provider.model_copy(update={"config": config})
        agents.append(registry.register(spec.model_copy(update={"provider": provider})))
    return agents


def session_requests(n: int, seed: int) -> list[SessionRequest]:
    rng = random.Random(seed)
    return [
        SessionRequest(
            task=Task(
                prompt=f"task {seed}-{i}",
                capability=rng.choice(CAPABILITIES),
                complexity=round(rng.uniform(0.2, 1.0), 2),
                input_tokens=rng.randint(100, 3000),
            ),
            max_attempts=rng.choice([1, 1, 1, 2]),
            optimize=rng.choice(["cost", "cost", "balanced"]),
        )
        for i in range(n)
    ]


def run_waves(store: EventStore, registry: AgentRegistry, waves: int, per_wave: int) -> None:
    """Submit and run sessions wave by wave (each wave's runs see the previous outcomes)."""
    runtime = Runtime(store, registry, config=RuntimeConfig(time_scale=0.0, seed=11))
    for wave in range(waves):
        for request in session_requests(per_wave, seed=100 + wave):
            runtime.sessions.submit(request)
        asyncio.run(runtime.run_pending())


REVIEW_LOOP = {
    "name": "review-loop",
    "steps": [
        {"id": "draft", "capability": "code.generate", "estimates": {"duration_s": 2.0}},
        {"id": "tests", "capability": "code.generate", "estimates": {"duration_s": 1.0}},
        {
            "id": "review",
            "capability": "code.review",
            "needs": ["draft", "tests"],
            "estimates": {"duration_s": 1.5},
        },
        {
            "id": "fix",
            "capability": "code.generate",
            "needs": ["review"],
            "estimates": {"duration_s": 1.0},
            "max_attempts": 3,
        },
    ],
}


def run_workflows(store: EventStore, registry: AgentRegistry, n: int) -> list[str]:
    """``n`` runs of a small DAG (two parallel steps, a review, a fix) through the runtime."""
    from nofx.domain import PatternName

    runtime = Runtime(store, registry, config=RuntimeConfig(time_scale=0.0, seed=12))
    ids = [
        runtime.sessions.submit(
            SessionRequest(
                task=Task(prompt=f"workflow {i}", capability="code.generate"),
                pattern=PatternName.WORKFLOW,
                workflow=REVIEW_LOOP,
            )
        ).session_id
        for i in range(n)
    ]
    # the first run is adapted before it starts: one more step, recorded as an event
    from nofx.workflows.adapt import Adaptation, AdaptationService

    AdaptationService(store, runtime.sessions, registry).adapt(
        Adaptation.model_validate(
            {
                "session_id": ids[0],
                "reason": "document the fix",
                "changes": [
                    {
                        "op": "add_step",
                        "step": {"id": "docs", "capability": "code.generate", "needs": ["fix"]},
                    }
                ],
            }
        ),
        "default",
    )
    asyncio.run(runtime.run_pending())
    return ids
