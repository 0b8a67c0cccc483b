"""NOFX executive dashboards: `streamlit run dashboards/app.py` (or `make up`).

Streamlit runs this file as a script on every interaction. The sidebar filters live
here, before the page runs, so they keep their values when the user changes page.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import altair as alt
import polars as pl
import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script, not a package

from dashboards import data, metrics

CACHE_TTL_S = 30
PERCENT = st.column_config.NumberColumn(format="percent")
USD = st.column_config.NumberColumn(format="$%.4f")
DAY = st.column_config.DateColumn(format="YYYY-MM-DD")


@st.cache_data(ttl=CACHE_TTL_S, show_spinner="reading the warehouse")
def cached_sessions() -> pl.DataFrame:
    return data.load_sessions()


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def cached_agent_daily() -> pl.DataFrame | None:
    return data.load_agent_daily()


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def cached_table(qualified: str, order_by: str | None = None) -> pl.DataFrame | None:
    return data.load_table(qualified, order_by)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def cached_workflow_run(session_id: str) -> tuple[dict[str, Any], pl.DataFrame]:
    return data.load_workflow_run(session_id)


@dataclass(frozen=True)
class View:
    """What every page shows: the filtered sessions and the filters that made them."""

    sessions: pl.DataFrame
    since: datetime | None
    agents: list[str]
    capabilities: list[str]


def download(frame: pl.DataFrame, name: str) -> None:
    st.download_button(
        f"Download {name}.csv",
        frame.write_csv().encode(),
        file_name=f"{name}.csv",
        mime="text/csv",
        key=f"download-{name}",
        on_click="ignore",
    )


def table(frame: pl.DataFrame, name: str, **column_config: Any) -> None:
    """Every table shown can be exported as the CSV of exactly what is shown."""
    st.dataframe(frame, hide_index=True, column_config=column_config)
    download(frame, name)


def explain_unavailable(exc: data.WarehouseUnavailable) -> None:
    if isinstance(exc, data.WarehouseBusy):
        st.warning(f"The warehouse is busy. {exc}")
        st.button("Try again")
    else:
        st.info(f"No data yet. {exc}")


def sidebar_view() -> View | data.WarehouseUnavailable:
    """Read the sessions and apply the sidebar filters, or say why there is nothing to show."""
    try:
        sessions = cached_sessions()
    except data.WarehouseUnavailable as exc:
        return exc
    st.sidebar.header("Filters")
    window = st.sidebar.selectbox("Time range", ["all", "24 hours", "7 days", "30 days"], key="w")
    tenants = st.sidebar.multiselect(
        "Tenant", sorted(sessions["tenant_id"].unique().to_list()), key="tenants"
    )
    agents = st.sidebar.multiselect(
        "Agent", sorted(sessions["agent_name"].drop_nulls().unique().to_list()), key="agents"
    )
    capabilities = st.sidebar.multiselect(
        "Capability", sorted(sessions["capability"].unique().to_list()), key="capabilities"
    )
    st.sidebar.caption(f"warehouse: {data.warehouse_path()}")
    if st.sidebar.button("Refresh data"):
        st.cache_data.clear()
        st.rerun()
    since = metrics.since_for(window, datetime.now(UTC))
    filtered = metrics.apply_filters(
        sessions, since=since, tenants=tenants, agents=agents, capabilities=capabilities
    )
    return View(filtered, since, agents, capabilities)


def overview() -> None:
    st.title("Executive overview")
    st.caption("Simulated agents in the demo: costs and outcomes come from the seeded simulator.")
    if isinstance(VIEW, data.WarehouseUnavailable):
        explain_unavailable(VIEW)
        return
    sessions = VIEW.sessions
    head = metrics.headline(sessions)
    cols = st.columns(6)
    cols[0].metric("Sessions", f"{head.sessions:,}")
    cols[1].metric("Success rate", metrics.fmt_rate(head.success_rate))
    cols[2].metric("Total cost", metrics.fmt_usd(head.cost_usd))
    cols[3].metric("Avg cost / session", metrics.fmt_usd(head.avg_cost_usd))
    cols[4].metric("Open", f"{head.open:,}", help="requested or running: no outcome yet")
    cols[5].metric("Failed", f"{head.failed:,}")
    alerts = cached_table(f"{data.ANALYTICS}.alerts")
    recs = cached_table(f"{data.ANALYTICS}.recommendations")
    sla = st.columns(3)
    sla[0].metric(
        "SLA: failures ≤ 1%",
        metrics.sla_status(head.success_rate),
        help="the orchestration failure-rate alert rule's threshold",
    )
    sla[1].metric(
        "Open alerts",
        "n/a" if alerts is None else f"{alerts.filter(pl.col('status') == 'open').height:,}",
    )
    savings = None if recs is None else float(recs["estimated_savings_usd"].drop_nulls().sum())
    sla[2].metric(
        "Estimated savings",
        "n/a" if savings is None else metrics.fmt_usd(savings),
        help="from the recommendations, over the observed period",
    )

    left, right = st.columns(2)
    trend = metrics.daily_trend(sessions)
    with left:
        st.subheader("7-day trend")
        if trend.height:
            base = alt.Chart(trend.to_pandas()).encode(x=alt.X("day:T", title="day"))
            bars = base.mark_bar(opacity=0.5).encode(y=alt.Y("sessions:Q", title="sessions"))
            line = base.mark_line(point=True, color="#d62728").encode(
                y=alt.Y("success_rate:Q", title="success rate", axis=alt.Axis(format="%"))
            )
            st.altair_chart(alt.layer(bars, line).resolve_scale(y="independent"), width="stretch")
        table(trend, "daily_trend", day=DAY, success_rate=PERCENT, cost_usd=USD)
    with right:
        st.subheader("Top failure reasons")
        table(metrics.failure_reasons(sessions), "failure_reasons", share=PERCENT)

    st.subheader("Sessions")
    table(sessions.sort("requested_at", descending=True), "sessions", cost_usd=USD)


def agent_performance() -> None:
    st.title("Agent performance")
    if isinstance(VIEW, data.WarehouseUnavailable):
        explain_unavailable(VIEW)
        return
    head = metrics.headline(VIEW.sessions)
    agents = metrics.agent_table(VIEW.sessions)
    cols = st.columns(4)
    cols[0].metric("Agents", f"{agents.height:,}")
    cols[1].metric("Sessions", f"{head.sessions:,}")
    cols[2].metric("Success rate", metrics.fmt_rate(head.success_rate))
    cols[3].metric("Total cost", metrics.fmt_usd(head.cost_usd))
    if agents.height:
        left, right = st.columns(2)
        frame = agents.to_pandas()
        tooltip = ["agent_name", "sessions", "success_rate", "avg_cost_usd", "p95_duration_ms"]
        left.altair_chart(
            alt.Chart(frame, title="Success rate against cost")
            .mark_circle()
            .encode(
                x=alt.X("avg_cost_usd:Q", title="avg cost per session ($)"),
                y=alt.Y("success_rate:Q", title="success rate", axis=alt.Axis(format="%")),
                size=alt.Size("sessions:Q"),
                tooltip=tooltip,
            ),
            width="stretch",
        )
        right.altair_chart(
            alt.Chart(frame, title="p95 session duration")
            .mark_bar()
            .encode(
                x=alt.X("p95_duration_ms:Q", title="p95 duration (ms)"),
                y=alt.Y("agent_name:N", title=None, sort="-x"),
                tooltip=tooltip,
            ),
            width="stretch",
        )
    table(agents, "agents", success_rate=PERCENT, cost_usd=USD, avg_cost_usd=USD)

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
        daily, since=VIEW.since, agents=VIEW.agents, capabilities=VIEW.capabilities
    )
    table(daily, "agent_performance_daily", day=DAY, success_rate=PERCENT, cost_usd=USD)


def published(qualified: str, order_by: str | None = None) -> pl.DataFrame | None:
    """A table for a page, or a message saying why it is not there and what to run."""
    try:
        frame = cached_table(qualified, order_by)
    except data.WarehouseUnavailable as exc:
        explain_unavailable(exc)
        return None
    if frame is None:
        st.info(f"{qualified} is not in the warehouse yet: run `make demo` first.")
    return frame


def workflows_page() -> None:
    st.title("Workflow execution")
    st.caption(
        "Planned makespan is the critical path of the steps' estimates; the realised one "
        "uses the steps' measured latencies (simulated agents in the demo)."
    )
    runs = published("main.workflow_executions", "requested_at")
    if runs is None:
        return
    if VIEW is not None and not isinstance(VIEW, data.WarehouseUnavailable) and VIEW.since:
        runs = runs.filter(pl.col("requested_at") >= VIEW.since.replace(tzinfo=None))
    if runs.is_empty():
        st.info("No workflow runs yet: submit one with pattern 'workflow' (see nofx/workflows).")
        return
    done = runs.filter(pl.col("status").is_in(["succeeded", "failed"]))
    delays = runs["delay_ratio"].drop_nulls()
    cols = st.columns(4)
    cols[0].metric("Workflow runs", f"{runs.height:,}")
    rate = done["succeeded"].mean() if done.height else None
    cols[1].metric("Success rate", metrics.fmt_rate(None if rate is None else float(rate)))
    cols[2].metric("Steps retried", f"{int(runs['steps_retried'].sum()):,}")
    cols[3].metric(
        "Median delay vs plan",
        "n/a" if delays.is_empty() else f"{float(delays.median()):+.0%}",
    )
    timed = runs.filter(pl.col("actual_makespan_s").is_not_null())
    if timed.height:
        st.altair_chart(
            alt.Chart(timed.to_pandas(), title="Planned against realised makespan")
            .mark_circle(size=80)
            .encode(
                x=alt.X("planned_makespan_s:Q", title="planned (s)"),
                y=alt.Y("actual_makespan_s:Q", title="realised (s)"),
                color=alt.Color("status:N"),
                tooltip=["workflow_execution_id", "steps_completed", "steps_retried", "cost_usd"],
            ),
            width="stretch",
        )
    table(runs.sort("requested_at", descending=True), "workflow_executions", cost_usd=USD)
    st.subheader("One run as a DAG")
    chosen = st.selectbox("Workflow run", runs["workflow_execution_id"].to_list()[::-1])
    if chosen:
        try:
            spec, steps = cached_workflow_run(chosen)
        except data.WarehouseUnavailable as exc:
            explain_unavailable(exc)
            return
        st.graphviz_chart(metrics.workflow_dot(spec, steps))
        st.caption("Red outline: the critical path. Green: completed; red: failed; grey: skipped.")
        table(steps, "workflow_steps", cost_usd=USD)


def predictions_page() -> None:
    st.title("Predictive analytics")
    st.caption(
        "Live accuracy scores only predictions made before the outcome was known; "
        "holdout is each model version's score at training time."
    )
    accuracy = published(f"{data.ANALYTICS}.prediction_accuracy", "day")
    models = published(f"{data.ANALYTICS}.prediction_models", "version")
    if accuracy is None or models is None:
        return
    live = accuracy.filter(pl.col("source") == "live")
    champion = models.filter(pl.col("is_champion"))
    cols = st.columns(4)
    cols[0].metric("Model versions", f"{models.height:,}")
    cols[1].metric("Champion", f"v{champion['version'][0]}" if champion.height else "none")
    cols[2].metric("Live predictions scored", f"{int(live['predictions'].sum() or 0):,}")
    latest = live.sort("day")["balanced_accuracy"].drop_nulls()
    cols[3].metric(
        "Live balanced accuracy",
        "n/a" if latest.is_empty() else f"{float(latest[-1]):.1%}",
        help="the alert rule fires below 85%",
    )
    if accuracy.height:
        st.altair_chart(
            alt.Chart(accuracy.to_pandas(), title="Accuracy over time")
            .mark_line(point=True)
            .encode(
                x=alt.X("day:T"),
                y=alt.Y(
                    "balanced_accuracy:Q", axis=alt.Axis(format="%"), title="balanced accuracy"
                ),
                color=alt.Color("source:N"),
                detail="model_version:N",
                tooltip=["model_version", "source", "predictions", "accuracy", "brier"],
            ),
            width="stretch",
        )
    table(accuracy, "prediction_accuracy", day=DAY, accuracy=PERCENT, balanced_accuracy=PERCENT)
    st.subheader("Model registry (mirrors MLflow)")
    table(models, "prediction_models")


def cost_page() -> None:
    st.title("Cost and optimisation")
    if isinstance(VIEW, data.WarehouseUnavailable):
        explain_unavailable(VIEW)
        return
    recs = published(f"{data.ANALYTICS}.recommendations")
    sessions = VIEW.sessions
    by_capability = (
        sessions.group_by("capability")
        .agg(pl.len().alias("sessions"), pl.col("cost_usd").sum().alias("cost_usd"))
        .sort("cost_usd", descending=True)
    )
    savings = 0.0 if recs is None else float(recs["estimated_savings_usd"].drop_nulls().sum())
    cols = st.columns(3)
    cols[0].metric("Total cost", metrics.fmt_usd(float(sessions["cost_usd"].sum() or 0.0)))
    cols[1].metric("Recommendations", f"{0 if recs is None else recs.height:,}")
    cols[2].metric("Estimated savings", metrics.fmt_usd(savings), help="over the observed period")
    if by_capability.height:
        st.altair_chart(
            alt.Chart(by_capability.to_pandas(), title="Cost by capability")
            .mark_bar()
            .encode(
                x=alt.X("cost_usd:Q", title="cost ($)"),
                y=alt.Y("capability:N", sort="-x", title=None),
                tooltip=["capability", "sessions", "cost_usd"],
            ),
            width="stretch",
        )
    table(by_capability, "cost_by_capability", cost_usd=USD)
    if recs is not None:
        st.subheader("Recommendations, by money saved")
        table(
            recs.drop("evidence"),
            "recommendations",
            estimated_savings_usd=USD,
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
        cols[1].metric("Peak concurrency forecast", f"{float(peak or 0.0):.1f}")
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


def alerts_page() -> None:
    st.title("Alerts")
    st.caption(
        "Rules: orchestration failures > 1%, workflow delays > 10%, prediction accuracy "
        "< 85%, pool utilisation > 80%, API p95 > 200 ms, any agent anomaly episode "
        "(NOFX_ALERT_RULES changes them). "
        "Resolve one with POST /api/v1/alerts/{id}/resolve."
    )
    alerts = published(f"{data.ANALYTICS}.alerts", "last_seen_at desc")
    if alerts is None:
        return
    open_alerts = alerts.filter(pl.col("status") == "open")
    cols = st.columns(3)
    cols[0].metric("Open alerts", f"{open_alerts.height:,}")
    cols[1].metric("Critical", f"{open_alerts.filter(pl.col('severity') == 'critical').height:,}")
    cols[2].metric("Resolved", f"{alerts.height - open_alerts.height:,}")
    st.subheader("Open")
    table(open_alerts, "open_alerts")
    st.subheader("History")
    table(alerts, "alerts")


st.set_page_config(page_title="NOFX", page_icon=":material/hub:", layout="wide")
page = st.navigation(
    [
        st.Page(overview, title="Executive overview", url_path="overview", default=True),
        st.Page(agent_performance, title="Agent performance", url_path="agents"),
        st.Page(workflows_page, title="Workflows", url_path="workflows"),
        st.Page(predictions_page, title="Predictions", url_path="predictions"),
        st.Page(cost_page, title="Cost and savings", url_path="cost"),
        st.Page(alerts_page, title="Alerts", url_path="alerts"),
    ]
)
VIEW = sidebar_view()
page.run()
