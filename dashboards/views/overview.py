"""The executive overview: health, headline numbers, actions, alerts and activity."""

from __future__ import annotations

from datetime import UTC, datetime

import altair as alt
import polars as pl
import streamlit as st

from dashboards import data, metrics
from dashboards.ui import (
    PERCENT,
    USD,
    View,
    cached_optional,
    explain_unavailable,
    named_agents,
    table,
)


def overview(view: View | data.WarehouseUnavailable, alerts_page: st.Page) -> None:
    st.title("Executive overview")
    if isinstance(view, data.WarehouseUnavailable):
        explain_unavailable(view)
        return
    sessions = view.sessions
    head = metrics.headline(sessions)
    alerts = cached_optional(f"{data.ANALYTICS}.alerts")
    recs = cached_optional(f"{data.ANALYTICS}.recommendations")
    counted = metrics.counted_savings(named_agents(recs, sessions)) if recs is not None else None
    state = metrics.health(head, alerts)
    colour = {"Healthy": "green", "Needs attention": "orange", "Critical": "red"}.get(
        state.verdict, "gray"
    )
    st.subheader(f":{colour}[{state.verdict}]: {state.reason}")
    st.caption(
        f"{view.label}. Simulated agents in the demo: costs and outcomes come from the "
        "seeded simulator."
    )
    cols = st.columns(6)
    cols[0].metric(
        "Success rate", metrics.fmt_rate(head.success_rate), help="succeeded / finished sessions"
    )
    cols[1].metric(
        "SLA: orchestration failures ≤ 1%",
        metrics.orchestration_sla(head),
        help="the orchestration failure-rate alert rule's threshold: sessions the control "
        "plane failed (no agent, timeout, rate limit, server error, lost worker); wrong "
        "answers are task failures and do not count against it",
    )
    cols[2].metric("Total cost", metrics.fmt_usd(head.cost_usd))
    savings = None if counted is None else float(counted["counted_savings_usd"].sum())
    cols[3].metric(
        "Estimated savings",
        "n/a" if savings is None else metrics.fmt_usd(savings),
        help="the recommendations' savings over the observed period, overlaps counted once "
        "(see Cost and savings)",
    )
    open_count = None if alerts is None else alerts.filter(pl.col("status") == "open").height
    cols[4].metric("Open alerts", "n/a" if open_count is None else f"{open_count:,}")
    cols[5].metric("Sessions", f"{head.sessions:,}")
    small = st.columns(6)
    small[0].metric("Avg cost / session", metrics.fmt_usd(head.avg_cost_usd))
    small[1].metric("Open", f"{head.open:,}", help="requested or running: no outcome yet")
    small[2].metric(
        "Orchestration failures",
        metrics.fmt_rate(head.orchestration_failure_rate),
        help=f"{head.orchestration_failed:,} finished sessions the control plane failed",
    )
    small[3].metric(
        "Task failures",
        metrics.fmt_rate(head.task_failure_rate),
        help=f"{head.task_failed:,} finished sessions failed on the task: a wrong answer, "
        "a rejected review, a prompt over the window, the budget",
    )
    small[4].metric(
        "Answer quality",
        "n/a" if head.answer_quality is None else f"{head.answer_quality:.2f}",
        help="mean quality (0..1) of answered steps, as the agents report it "
        "(the simulator does; real agents may not)",
    )
    small[5].metric("Tokens", f"{head.tokens:,}")

    left, right = st.columns(2)
    with left:
        st.subheader("Top actions")
        actions = None if counted is None else metrics.top_actions(counted)
        if actions is None or actions.is_empty():
            st.write("No action with a money estimate yet.")
        else:
            for i, row in enumerate(actions.to_dicts(), 1):
                st.markdown(
                    f"**{i}. {row['title']}** — saves about "
                    f"**{metrics.fmt_usd(row['counted_savings_usd'])}** over the observed "
                    f"period (confidence {row['confidence'] or 0:.0%}). {row['detail']}"
                )
    with right:
        st.subheader("Open alerts")
        sentences = metrics.alert_sentences(alerts)
        if alerts is None:
            st.write("Alert rules have not run yet: run `make demo`.")
        elif not sentences:
            st.write("No open alerts.")
        for sentence in sentences:
            st.markdown(f"- {sentence}")
        if sentences:
            st.page_link(alerts_page, label="Resolve them on the Alerts page", icon="➡️")

    frame, unit, span = metrics.activity(sessions, view.since, datetime.now(UTC))
    if frame.height:
        chart_left, chart_right = st.columns(2)
        outcome_colour = alt.Color(
            "outcome:N",
            title="outcome",
            scale=alt.Scale(
                domain=["succeeded", "failed", "open", "cancelled"],
                range=["#2ca02c", "#d62728", "#7f7f7f", "#bcbd22"],
            ),
        )
        x = alt.X(
            "bucket:T",
            title=f"time (UTC), one bar per {unit}",
            scale=alt.Scale(domain=[t.isoformat() for t in span]) if span else alt.Undefined,
        )
        chart_left.altair_chart(
            alt.Chart(frame.to_pandas(), title=f"Sessions per {unit}, by outcome")
            .mark_bar()
            .encode(
                x=x,
                x2="bucket_end:T",
                y=alt.Y("sum(sessions):Q", title="sessions"),
                color=outcome_colour,
                tooltip=["bucket:T", "outcome", "sessions"],
            ),
            width="stretch",
        )
        chart_right.altair_chart(
            alt.Chart(frame.to_pandas(), title=f"Cost per {unit}, by outcome")
            .mark_bar()
            .encode(
                x=x,
                x2="bucket_end:T",
                y=alt.Y("sum(cost_usd):Q", title="cost ($)"),
                color=outcome_colour,
                tooltip=["bucket:T", "outcome", alt.Tooltip("cost_usd:Q", format="$.4f")],
            ),
            width="stretch",
        )
    with st.expander("Failure reasons and every session"):
        table(metrics.failure_reasons(sessions), "failure_reasons", share=PERCENT)
        table(sessions.sort("requested_at", descending=True), "sessions", cost_usd=USD)
