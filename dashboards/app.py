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

from dashboards import alerts_page as alerts_view
from dashboards import data, metrics
from dashboards import usage_page as usage_view

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
    label: str  # the time range in words, e.g. "Last 24 hours"


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
    else:  # the warehouse's path is an engineer's detail, not an executive's
        path = str(data.warehouse_path())
        reason = str(exc).replace(f" at {path}", "").replace(path, "the warehouse")
        st.info(f"No data yet. {reason}")


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
    if st.sidebar.button("Refresh data", help="read the warehouse again now (else every 30 s)"):
        st.cache_data.clear()
        st.rerun()
    since = metrics.since_for(window, datetime.now(UTC))
    filtered = metrics.apply_filters(
        sessions, since=since, tenants=tenants, agents=agents, capabilities=capabilities
    )
    label = "All time" if since is None else f"Last {window}"
    return View(filtered, since, agents, capabilities, label)


def overview() -> None:
    st.title("Executive overview")
    if isinstance(VIEW, data.WarehouseUnavailable):
        explain_unavailable(VIEW)
        return
    sessions = VIEW.sessions
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
        f"{VIEW.label}. Simulated agents in the demo: costs and outcomes come from the "
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
            st.page_link(ALERTS_PAGE, label="Resolve them on the Alerts page", icon="➡️")

    frame, unit, span = metrics.activity(sessions, VIEW.since, datetime.now(UTC))
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


def named_agents(recs: pl.DataFrame, sessions: pl.DataFrame) -> pl.DataFrame:
    """Recommendations with agent ids replaced by names in their titles (pools are by id)."""
    names = {
        row["agent_id"]: row["agent_name"]
        for row in sessions.select("agent_id", "agent_name").drop_nulls().unique().to_dicts()
    }
    if not names or recs.is_empty():
        return recs

    def rename(text: str | None) -> str | None:
        if text is None:
            return None
        for agent_id, name in names.items():
            text = text.replace(agent_id, name)
        return text

    return recs.with_columns(
        pl.col("title").map_elements(rename, return_dtype=pl.Utf8),
        pl.col("detail").map_elements(rename, return_dtype=pl.Utf8),
    )


def cached_optional(qualified: str, order_by: str | None = None) -> pl.DataFrame | None:
    """A table, or None when it is not published yet or the warehouse is busy."""
    try:
        return cached_table(qualified, order_by)
    except data.WarehouseUnavailable:
        return None


def agent_performance() -> None:
    st.title("Agent performance")
    if isinstance(VIEW, data.WarehouseUnavailable):
        explain_unavailable(VIEW)
        return
    head = metrics.headline(VIEW.sessions)
    agents = metrics.agent_table(VIEW.sessions)
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
        daily, since=VIEW.since, agents=VIEW.agents, capabilities=VIEW.capabilities
    )
    rates = {
        column: PERCENT
        for column in ("success_rate", "orchestration_failure_rate", "task_failure_rate")
        if column in daily.columns
    }
    table(daily, "agent_performance_daily", day=DAY, cost_usd=USD, **rates)


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
    ratio = (runs["delay_ratio"].drop_nulls() + 1.0) if "delay_ratio" in runs.columns else None
    cols = st.columns(4)
    cols[0].metric("Workflow runs", f"{runs.height:,}")
    rate = done["succeeded"].mean() if done.height else None
    cols[1].metric("Success rate", metrics.fmt_rate(None if rate is None else float(rate)))
    cols[2].metric("Steps retried", f"{int(runs['steps_retried'].sum()):,}")
    cols[3].metric(
        "Realised / planned (median)",
        "n/a" if ratio is None or ratio.is_empty() else f"{float(ratio.median()):.2f}x",
        help="1.00x is on plan; the plan uses the templates' step estimates, the demo's "
        "simulated agents answer far faster than those estimates",
    )
    elapsed = runs.filter(pl.col("ended_at").is_not_null()).with_columns(
        (
            (
                pl.col("ended_at") - pl.col("started_at").fill_null(pl.col("requested_at"))
            ).dt.total_milliseconds()
            / 1000.0
        ).alias("elapsed_s")
    )
    if elapsed.height:
        st.altair_chart(
            alt.Chart(elapsed.to_pandas(), title="Elapsed time of every finished run, by outcome")
            .mark_circle(size=90)
            .encode(
                x=alt.X("requested_at:T", title="requested at (UTC)"),
                y=alt.Y("elapsed_s:Q", title="elapsed (s)"),
                color=alt.Color(
                    "status:N",
                    title="outcome",
                    scale=alt.Scale(domain=["succeeded", "failed"], range=["#2ca02c", "#d62728"]),
                ),
                tooltip=[
                    "workflow_execution_id",
                    "status",
                    "elapsed_s",
                    "steps_completed",
                    "steps_retried",
                    "error_type",
                    "cost_usd",
                ],
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
    if not isinstance(VIEW, data.WarehouseUnavailable) and VIEW.since is not None:
        accuracy = accuracy.filter(pl.col("day").cast(pl.Date) >= VIEW.since.date())
    lines = metrics.live_accuracy_lines(accuracy)
    champion = models.filter(pl.col("is_champion"))
    cols = st.columns(3)
    cols[0].metric("Model versions", f"{models.height:,}")
    cols[1].metric("Champions", f"{champion.height:,}")
    cols[2].metric("Live predictions scored", f"{int(lines['predictions'].sum() or 0):,}")
    latest = lines.group_by("model_name").agg(pl.all().sort_by("day").last()).sort("model_name")
    if latest.height:
        per_model = st.columns(latest.height)
        for col, row in zip(per_model, latest.to_dicts(), strict=True):
            col.metric(
                f"{row['model_name']}: live balanced accuracy",
                f"{row['balanced_accuracy']:.1%}",
                help=f"{row['predictions']} predictions made before the outcome, scored on "
                f"{row['day']} (versions {row['versions']}); the alert rule fires below 85%",
            )
    if lines.height:
        frame = lines.to_pandas()
        st.altair_chart(
            alt.Chart(frame, title="Live balanced accuracy, one line per model")
            .mark_line(point=alt.OverlayMarkDef(size=80))
            .encode(
                x=alt.X("day:T", title="day (UTC)"),
                y=alt.Y(
                    "balanced_accuracy:Q",
                    axis=alt.Axis(format="%"),
                    title="balanced accuracy (predictions made before outcomes)",
                    scale=alt.Scale(domain=[0, 1]),
                ),
                color=alt.Color("model_name:N", title="model"),
                tooltip=["model_name", "day:T", "predictions", "versions"],
            )
            + alt.Chart(frame)
            .mark_rule(strokeDash=[4, 4], color="#d62728")
            .encode(y=alt.datum(0.85)),
            width="stretch",
        )
        st.caption(
            "Dashed line: the 85% alert threshold. Holdout scores (at training time) are in "
            "the table below and in the registry."
        )
    else:
        st.info(
            "No live accuracy yet: predictions are scored once the sessions they were made "
            "for have finished (run the pipeline again after new sessions)."
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
            alt.Chart(by_capability.to_pandas(), title=f"Cost by capability ({VIEW.label})")
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
    alerts_view.alerts_page(published, table)


def api_usage_page() -> None:
    usage_view.usage_page(published, table)


st.set_page_config(page_title="NOFX", page_icon=":material/hub:", layout="wide")
ALERTS_PAGE = st.Page(alerts_page, title="Alerts", url_path="alerts")
page = st.navigation(
    [
        st.Page(overview, title="Executive overview", url_path="overview", default=True),
        st.Page(agent_performance, title="Agent performance", url_path="agents"),
        st.Page(workflows_page, title="Workflows", url_path="workflows"),
        st.Page(predictions_page, title="Predictions", url_path="predictions"),
        st.Page(cost_page, title="Cost and savings", url_path="cost"),
        ALERTS_PAGE,
        st.Page(api_usage_page, title="API usage", url_path="usage"),
    ]
)
VIEW = sidebar_view()
page.run()
