"""Agent performance: each agent's outcomes, cost and daily trend."""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from dashboards import data, metrics
from dashboards.ui import (
    DAY,
    PERCENT,
    USD,
    View,
    cached_agent_daily,
    explain_unavailable,
    table,
)


def agent_performance(view: View | data.WarehouseUnavailable) -> None:
    st.title("Agent performance")
    if isinstance(view, data.WarehouseUnavailable):
        explain_unavailable(view)
        return
    head = metrics.headline(view.sessions)
    agents = metrics.agent_table(view.sessions)
    cols = st.columns(6)
    cols[0].metric("Agents", f"{agents.height:,}")
    cols[1].metric("Sessions", f"{head.sessions:,}")
    cols[2].metric("Success rate", metrics.fmt_rate(head.success_rate))
    cols[3].metric(
        "Orchestration failures",
        metrics.fmt_rate(head.orchestration_failure_rate),
        help="the control plane's share of finished sessions (target ≤ 1%)",
    )
    cols[4].metric(
        "Task failures",
        metrics.fmt_rate(head.task_failure_rate),
        help="finished sessions that failed on the task: wrong answers",
    )
    cols[5].metric("Total cost", metrics.fmt_usd(head.cost_usd))
    if agents.height:
        left, right = st.columns(2)
        frame = agents.to_pandas()
        tooltip = ["agent_name", "sessions", "success_rate", "avg_cost_usd", "p95_duration_ms"]
        base = alt.Chart(frame, title="Success rate against cost per session").encode(
            x=alt.X("avg_cost_usd:Q", title="average cost per session ($)"),
            y=alt.Y("success_rate:Q", title="success rate", axis=alt.Axis(format="%")),
            tooltip=tooltip,
        )
        left.altair_chart(
            base.mark_circle(opacity=0.7).encode(
                size=alt.Size("sessions:Q", title="sessions"),
                color=alt.Color("agent_name:N", title="agent"),
            )
            + base.mark_text(align="left", dx=8, fontSize=12).encode(text="agent_name:N"),
            width="stretch",
        )
        right.altair_chart(
            alt.Chart(frame, title="p95 session duration by agent")
            .mark_bar()
            .encode(
                x=alt.X("p95_duration_ms:Q", title="p95 duration (ms)"),
                y=alt.Y("agent_name:N", title="agent", sort="-x"),
                color=alt.Color("agent_name:N", title="agent"),
                tooltip=tooltip,
            ),
            width="stretch",
        )
        failures = agents.unpivot(
            index="agent_name",
            on=["orchestration_failure_rate", "task_failure_rate"],
            variable_name="measure",
            value_name="rate",
        ).with_columns(pl.col("measure").str.replace("_failure_rate", ""))
        st.altair_chart(
            alt.Chart(
                failures.to_pandas(),
                title="Failure rate by agent: the orchestrator's vs the task's",
            )
            .mark_bar()
            .encode(
                x=alt.X("rate:Q", title="share of finished sessions", axis=alt.Axis(format="%")),
                y=alt.Y("agent_name:N", title="agent"),
                yOffset="measure:N",
                color=alt.Color(
                    "measure:N",
                    title="whose failure",
                    scale=alt.Scale(domain=["orchestration", "task"], range=["#d62728", "#ff9896"]),
                ),
                tooltip=["agent_name", "measure", alt.Tooltip("rate:Q", format=".1%")],
            ),
            width="stretch",
        )
    table(
        agents,
        "agents",
        success_rate=PERCENT,
        orchestration_failure_rate=PERCENT,
        task_failure_rate=PERCENT,
        cost_usd=USD,
        avg_cost_usd=USD,
    )

    st.subheader("Daily performance by agent and capability")
    try:
        daily = cached_agent_daily()
    except data.WarehouseUnavailable as exc:
        explain_unavailable(exc)
        return
    if daily is None:
        st.info("agent_performance_daily is not in the warehouse yet: run `make demo` first.")
        return
    daily = metrics.apply_daily_filters(
        daily, since=view.since, agents=view.agents, capabilities=view.capabilities
    )
    rates = {
        column: PERCENT
        for column in ("success_rate", "orchestration_failure_rate", "task_failure_rate")
        if column in daily.columns
    }
    table(daily, "agent_performance_daily", day=DAY, cost_usd=USD, **rates)
