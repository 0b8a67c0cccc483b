"""Recommendations with estimated savings, computed from what the fleet actually did.

Pure functions over polars frames of the marts (``agent_step_calls``, the pool scaling
decisions), so they are testable without a warehouse. Each recommendation says what to
change, why (the evidence), and what it would have saved over the observed period, in
money and in time, when that can be estimated honestly:

- cheaper_agent: an agent does a capability's work at a success rate within a tolerance of a
  cheaper agent's; routing that work to the cheaper one saves the cost difference.
- flaky_step: a capability (or workflow step) fails often on first attempts; the retries
  cost time and money, and raising retries or rerouting is cheaper than failing sessions.
- underused_pool: a pool's demand stays far below its capacity; a lower minimum frees it.
"""

from __future__ import annotations

import json
import math

import polars as pl

RECOMMENDATION_SCHEMA = {
    "recommendation_id": pl.String,
    "kind": pl.String,
    "subject": pl.String,
    "title": pl.String,
    "detail": pl.String,
    "estimated_savings_usd": pl.Float64,
    "estimated_savings_s": pl.Float64,
    "confidence": pl.Float64,
    "evidence": pl.String,
}


def wilson_interval(successes: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """95% interval for a success rate: small samples get wide intervals, not false certainty."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def agent_stats(calls: pl.DataFrame) -> pl.DataFrame:
    """Per capability and agent: calls, success rate, average cost and latency."""
    return (
        calls.group_by("capability", "agent_id", "agent_name")
        .agg(
            pl.len().alias("calls"),
            pl.col("succeeded").cast(pl.Float64).mean().alias("success_rate"),
            pl.col("cost_usd").mean().alias("avg_cost_usd"),
            pl.col("latency_ms").mean().alias("avg_latency_ms"),
        )
        .sort("capability", "agent_id")
    )


def cheaper_agent(
    calls: pl.DataFrame, *, tolerance: float = 0.02, min_calls: int = 20
) -> list[dict[str, object]]:
    """For each capability, agents whose work a cheaper agent does about as well."""
    stats = agent_stats(calls).filter(pl.col("calls") >= min_calls)
    out: list[dict[str, object]] = []
    for (capability,), group in stats.group_by("capability", maintain_order=True):
        rows = group.to_dicts()
        for expensive in rows:
            rivals = [
                r
                for r in rows
                if r["avg_cost_usd"] < expensive["avg_cost_usd"]
                and r["success_rate"] >= expensive["success_rate"] - tolerance
            ]
            if not rivals:
                continue
            best = min(rivals, key=lambda r: r["avg_cost_usd"])
            saving = expensive["calls"] * (expensive["avg_cost_usd"] - best["avg_cost_usd"])
            low, _ = wilson_interval(best["success_rate"] * best["calls"], best["calls"])
            _, high = wilson_interval(
                expensive["success_rate"] * expensive["calls"], expensive["calls"]
            )
            seconds = expensive["calls"] * max(
                0.0, (expensive["avg_latency_ms"] or 0) - (best["avg_latency_ms"] or 0)
            )
            out.append(
                {
                    "kind": "cheaper_agent",
                    "subject": f"{capability}:{expensive['agent_name']}",
                    "title": (
                        f"Route {capability} from {expensive['agent_name']} to {best['agent_name']}"
                    ),
                    "detail": (
                        f"{best['agent_name']} succeeds {best['success_rate']:.1%} at "
                        f"${best['avg_cost_usd']:.5f} per call; {expensive['agent_name']} "
                        f"{expensive['success_rate']:.1%} at ${expensive['avg_cost_usd']:.5f}"
                    ),
                    "estimated_savings_usd": saving,
                    "estimated_savings_s": seconds / 1000,
                    # how sure: the cheaper agent's pessimistic rate against the other's best
                    "confidence": max(0.0, min(1.0, 1 - max(0.0, high - low))),
                    "evidence": {"from": expensive, "to": best},
                }
            )
    return out


def flaky_steps(
    calls: pl.DataFrame, *, failure_rate: float = 0.2, min_calls: int = 20
) -> list[dict[str, object]]:
    """Capabilities whose attempts fail often: the retries' time and money, and what to do."""
    grouped = (
        calls.group_by("capability")
        .agg(
            pl.len().alias("calls"),
            (~pl.col("succeeded")).sum().alias("failures"),
            pl.col("latency_ms").filter(~pl.col("succeeded")).sum().alias("failed_ms"),
            pl.col("cost_usd").filter(~pl.col("succeeded")).sum().alias("failed_usd"),
        )
        .filter(pl.col("calls") >= min_calls)
        .with_columns((pl.col("failures") / pl.col("calls")).alias("failure_rate"))
        .filter(pl.col("failure_rate") >= failure_rate)
        .sort("failure_rate", descending=True)
    )
    return [
        {
            "kind": "flaky_step",
            "subject": row["capability"],
            "title": f"{row['capability']} fails {row['failure_rate']:.0%} of attempts",
            "detail": (
                f"{row['failures']} of {row['calls']} attempts failed; raise max_attempts "
                "for these steps or route them to a more reliable agent"
            ),
            "estimated_savings_usd": float(row["failed_usd"] or 0.0),
            "estimated_savings_s": float(row["failed_ms"] or 0.0) / 1000,
            "confidence": min(1.0, row["calls"] / 100),
            "evidence": row,
        }
        for row in grouped.to_dicts()
    ]


def underused_pools(decisions: pl.DataFrame, *, below: float = 0.3) -> list[dict[str, object]]:
    """Pools whose latest decision left them mostly idle above their minimum."""
    if decisions.is_empty():
        return []
    latest = (
        decisions.filter(pl.col("event_type") == "PoolScaled")
        .sort("decision_id")
        .group_by("agent_id")
        .last()
        .with_columns(
            (pl.col("utilisation") * pl.col("replicas_before") / pl.col("replicas_after")).alias(
                "utilisation_after"
            )
        )
        .filter(pl.col("utilisation_after") < below)
    )
    return [
        {
            "kind": "underused_pool",
            "subject": row["agent_id"],
            "title": f"Pool of {row['agent_id']} runs at {row['utilisation_after']:.0%}",
            "detail": (
                f"{row['replicas_after']} replicas after the last decision ({row['reason']}); "
                "lower its min_replicas so it can shrink further"
            ),
            "estimated_savings_usd": None,
            "estimated_savings_s": None,
            "confidence": 0.5,
            "evidence": row,
        }
        for row in latest.to_dicts()
    ]


def recommendations_frame(items: list[dict[str, object]]) -> pl.DataFrame:
    """Ranked by estimated money saved (then time); ids are stable for the same subject."""
    rows = [
        {
            **{k: v for k, v in item.items() if k != "evidence"},
            "recommendation_id": f"{item['kind']}/{item['subject']}",
            "evidence": json.dumps(item["evidence"], default=str, sort_keys=True),
        }
        for item in items
    ]
    frame = pl.DataFrame(rows, schema=RECOMMENDATION_SCHEMA)
    return frame.sort(
        ["estimated_savings_usd", "estimated_savings_s"], descending=True, nulls_last=True
    )


def agent_benchmark(calls: pl.DataFrame, *, min_calls: int = 10) -> list[dict[str, object]]:
    """Insights, one per capability: which agent succeeds most, which is cheapest, which is
    fastest, over the agents with enough calls to judge."""
    stats = agent_stats(calls).filter(pl.col("calls") >= min_calls)
    out: list[dict[str, object]] = []
    for (capability,), group in stats.group_by("capability", maintain_order=True):
        best = group.sort("success_rate", descending=True).row(0, named=True)
        cheapest = group.sort("avg_cost_usd").row(0, named=True)
        fastest = group.sort("avg_latency_ms").row(0, named=True)
        out.append(
            {
                "kind": "agent_benchmark",
                "subject": capability,
                "title": f"{capability}: {best['agent_name']} succeeds most "
                f"({best['success_rate']:.1%}), {cheapest['agent_name']} is cheapest",
                "detail": (
                    f"{group.height} agents compared; fastest is {fastest['agent_name']} at "
                    f"{fastest['avg_latency_ms']:.0f} ms; cheapest costs "
                    f"${cheapest['avg_cost_usd']:.5f} per call at "
                    f"{cheapest['success_rate']:.1%} success"
                ),
                "value": best["success_rate"],
                "evidence": group.to_dicts(),
            }
        )
    return out
