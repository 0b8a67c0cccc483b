"""Synthetic feature frames with a known signal: harder tasks and weaker agents fail more."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta

import polars as pl


def feature_frame(n: int = 240, seed: int = 5, *, failure_bias: float = 0.0) -> pl.DataFrame:
    rng = random.Random(seed)
    start = datetime(2026, 1, 1)
    rows = []
    for i in range(n):
        complexity = rng.random()
        proficiency = rng.randint(1, 5)
        logit = 8.0 * (complexity - 0.55) - 1.0 * (proficiency - 3) + failure_bias
        failed = int(rng.random() < 1 / (1 + math.exp(-logit)))
        rows.append(
            {
                "session_id": f"ses_{i:04d}",
                "tenant_id": "default",
                "status": "failed" if failed else "succeeded",
                "requested_at": start + timedelta(minutes=i),
                "agent_id": f"agt_{proficiency}",
                "capability": rng.choice(["code.generate", "code.review"]),
                "pattern": "solo",
                "optimize": rng.choice(["cost", "balanced"]),
                "complexity": complexity,
                "requested_input_tokens": float(rng.randint(100, 3000)),
                "max_attempts": float(rng.choice([1, 2])),
                "input_per_1k_tokens": 0.0005 * proficiency,
                "output_per_1k_tokens": 0.0015 * proficiency,
                "proficiency": float(proficiency),
                "agent_prior_success_rate": 0.5,
                "agent_prior_sessions": float(i // 10),
                "failed": failed,
            }
        )
    return pl.DataFrame(rows)
