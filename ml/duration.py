"""Duration and cost forecasts per step type and agent, as quantiles rather than means.

A scheduler needs "how long will this take, and how long in a bad case": p50 and p90 of
past runs of the same capability on the same agent. Durations are skewed (a few runs take
many times the median), so quantiles are read off the history directly, not from a mean and
a standard deviation. A group with little history borrows from its parent: an agent new to
a capability gets the capability's quantiles across agents, and a new capability gets the
fleet's. Every forecast row says which level it came from and from how many runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

QUANTILES = (0.5, 0.9)
MIN_SAMPLES = 20
LEVELS = (("capability", "agent_id"), ("capability",), ())


def _quantile_columns(value: str, quantiles: Sequence[float]) -> list[pl.Expr]:
    return [
        pl.col(value).quantile(q, interpolation="linear").alias(f"p{round(q * 100)}")
        for q in quantiles
    ] + [pl.len().alias("samples")]


def fit_quantiles(
    history: pl.DataFrame,
    value: str,
    *,
    quantiles: Sequence[float] = QUANTILES,
    min_samples: int = MIN_SAMPLES,
) -> pl.DataFrame:
    """One row per (capability, agent_id) seen in ``history`` and per capability, plus a
    fleet row, each with p-columns, samples and the level it was computed at.

    Groups under ``min_samples`` take their parent's quantiles (``level`` says so)."""
    clean = history.filter(pl.col(value).is_not_null() & pl.col(value).is_finite())
    if clean.is_empty():
        return pl.DataFrame()
    fleet = clean.select(_quantile_columns(value, quantiles)).with_columns(
        pl.lit("fleet").alias("level")
    )
    by_capability = clean.group_by("capability").agg(_quantile_columns(value, quantiles))
    by_agent = clean.group_by("capability", "agent_id").agg(_quantile_columns(value, quantiles))
    p_columns = [f"p{round(q * 100)}" for q in quantiles]

    def borrow(
        frame: pl.DataFrame, parent: pl.DataFrame, on: list[str], level: str
    ) -> pl.DataFrame:
        joined = (
            frame.join(parent.select(*on, *p_columns, "level"), on=on, how="left", suffix="_parent")
            if on
            else frame.join(parent.select(*p_columns, "level"), how="cross", suffix="_parent")
        )
        enough = pl.col("samples") >= min_samples
        return joined.select(
            *[c for c in frame.columns if c not in p_columns],
            *[
                pl.when(enough).then(pl.col(c)).otherwise(pl.col(f"{c}_parent")).alias(c)
                for c in p_columns
            ],
            pl.when(enough).then(pl.lit(level)).otherwise(pl.col("level")).alias("level"),
        )

    capability_rows = borrow(by_capability, fleet, [], "capability")
    agent_rows = borrow(by_agent, capability_rows, ["capability"], "agent")
    return pl.concat(
        [
            agent_rows,
            capability_rows.with_columns(pl.lit(None, dtype=pl.String).alias("agent_id")),
            fleet.with_columns(
                pl.lit(None, dtype=pl.String).alias("capability"),
                pl.lit(None, dtype=pl.String).alias("agent_id"),
            ),
        ],
        how="diagonal",
    ).select("capability", "agent_id", *p_columns, "samples", "level")


def forecast(table: pl.DataFrame, requests: pl.DataFrame) -> pl.DataFrame:
    """Quantiles for each (capability, agent_id) request, from the most specific row that
    exists: the agent's own, else the capability's, else the fleet's."""
    p_columns = [c for c in table.columns if c.startswith("p") and c[1:].isdigit()]
    agent = table.filter(pl.col("agent_id").is_not_null())
    capability = table.filter(pl.col("agent_id").is_null() & pl.col("capability").is_not_null())
    fleet = table.filter(pl.col("capability").is_null()).select(p_columns)
    out = requests.join(
        agent.select("capability", "agent_id", *p_columns),
        on=["capability", "agent_id"],
        how="left",
    )
    out = out.join(
        capability.select("capability", *p_columns), on="capability", how="left", suffix="_cap"
    )
    out = out.join(fleet, how="cross", suffix="_fleet")
    return out.select(
        *requests.columns,
        *[pl.coalesce(c, f"{c}_cap", f"{c}_fleet").alias(c) for c in p_columns],
    )


def pinball_loss(actual: np.ndarray, predicted: np.ndarray, quantile: float) -> float:
    """The loss a quantile forecast minimises: under-forecasts cost q, over-forecasts 1-q."""
    diff = np.asarray(actual, dtype=float) - np.asarray(predicted, dtype=float)
    return float(np.mean(np.maximum(quantile * diff, (quantile - 1) * diff)))


def coverage(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Share of actual values at or under the forecast (a good p90 covers about 0.9)."""
    return float(np.mean(np.asarray(actual, dtype=float) <= np.asarray(predicted, dtype=float)))


def normal_baseline(history: np.ndarray, quantile: float) -> float:
    """What people start with: mean plus z times the standard deviation, as if durations
    were normal (they are not; the comparison shows what that costs)."""
    from statistics import NormalDist

    values = np.asarray(history, dtype=float)
    return float(values.mean() + NormalDist().inv_cdf(quantile) * values.std())
