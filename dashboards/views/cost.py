"""Cost and optimisation: spend, recommendations by the money they save, and forecasts."""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from dashboards import data, metrics
from dashboards.ui import (
    PERCENT,
    USD,
    View,
    explain_unavailable,
    named_agents,
    published,
    table,
)


def cost_page(view: View | data.WarehouseUnavailable) -> None:
    st.title("Cost and optimisation")
    if isinstance(view, data.WarehouseUnavailable):
        explain_unavailable(view)
        return
    recs = published(f"{data.ANALYTICS}.recommendations")
    sessions = view.sessions
    by_capability = (
        sessions.group_by("capability", "status")
        .agg(pl.len().alias("sessions"), pl.col("cost_usd").sum().alias("cost_usd"))
        .sort("cost_usd", descending=True)
    )
    counted = None if recs is None else metrics.counted_savings(named_agents(recs, sessions))
    savings = 0.0 if counted is None else float(counted["counted_savings_usd"].sum())
    claimed = 0.0 if recs is None else float(recs["estimated_savings_usd"].drop_nulls().sum())
    cols = st.columns(3)
    cols[0].metric("Total cost", metrics.fmt_usd(float(sessions["cost_usd"].sum() or 0.0)))
    cols[1].metric("Recommendations", f"{0 if recs is None else recs.height:,}")
    cols[2].metric(
        "Estimated savings",
        metrics.fmt_usd(savings),
        help="over the observed period, each dollar counted once (see below)",
    )
    if by_capability.height:
        st.altair_chart(
            alt.Chart(by_capability.to_pandas(), title=f"Cost by capability ({view.label})")
            .mark_bar()
            .encode(
                x=alt.X("sum(cost_usd):Q", title="cost ($)"),
                y=alt.Y("capability:N", sort="-x", title="capability"),
                color=alt.Color("status:N", title="session outcome"),
                tooltip=[
                    "capability",
                    "status",
                    "sessions",
                    alt.Tooltip("cost_usd:Q", format="$.4f"),
                ],
            ),
            width="stretch",
        )
    with st.expander("Cost by capability as a table"):
        table(by_capability, "cost_by_capability", cost_usd=USD)
    if counted is not None:
        st.subheader("Recommendations, by money saved")
        if claimed > savings + 1e-9:
            st.markdown(
                f"The recommendations claim **{metrics.fmt_usd(claimed)}** in total, but "
                "several claim the same calls' money: a slow, failing capability and a "
                "cheaper agent for it. Counting each dollar once (one action per agent and "
                "capability; per capability, the agent-level actions or the capability-level "
                f"one, whichever saves more) gives **{metrics.fmt_usd(savings)}**. Savings "
                "are over the observed period, at the observed prices."
            )
        else:
            st.markdown(
                f"The recommendations save **{metrics.fmt_usd(savings)}** over the observed "
                "period, at the observed prices; none of them claims the same calls' money "
                "as another (overlaps would be counted once)."
            )
        shown = counted.select(
            "title",
            "counted_savings_usd",
            "estimated_savings_usd",
            "confidence",
            "why",
            "detail",
            "kind",
        )
        table(
            shown,
            "recommendations",
            title=st.column_config.TextColumn("action", width="large"),
            counted_savings_usd=st.column_config.NumberColumn("counted saving", format="$%.4f"),
            estimated_savings_usd=st.column_config.NumberColumn("claimed", format="$%.4f"),
            confidence=PERCENT,
        )
    forecasts_section()


def forecasts_section() -> None:
    """What the next week will cost, and how long each step type takes in a bad case."""
    st.subheader("Forecasts")
    usage = published(f"{data.ANALYTICS}.usage_forecasts", "bucket_start")
    if usage is not None and usage.height:
        cost = usage.filter(pl.col("metric") == "cost_usd")
        cols = st.columns(2)
        cols[0].metric("Forecast cost, next 7 days", metrics.fmt_usd(float(cost["forecast"].sum())))
        peak = usage.filter(pl.col("metric") == "concurrency")["forecast"].max()
        peak = float(peak) if isinstance(peak, int | float) else 0.0  # None: all null
        cols[1].metric("Peak concurrency forecast", f"{peak:.1f}")
        st.altair_chart(
            alt.Chart(cost.to_pandas(), title="Hourly cost forecast")
            .mark_line()
            .encode(
                x=alt.X("bucket_start:T", title=None),
                y=alt.Y("forecast:Q", title="cost ($/hour)"),
                color=alt.Color("tenant_id:N"),
            ),
            width="stretch",
        )
    elif usage is not None:
        st.info("Usage forecasts start once a tenant has a week of history.")
    durations = published(f"{data.ANALYTICS}.step_duration_forecasts", "capability, agent_id")
    if durations is not None and durations.height:
        st.caption(
            "p50/p90 per capability and agent; 'level' says when an agent with under 20 runs "
            "borrows its capability's numbers."
        )
        table(durations, "step_duration_forecasts", cost_p50_usd=USD, cost_p90_usd=USD)
