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


st.set_page_config(page_title="NOFX", page_icon=":material/hub:", layout="wide")
page = st.navigation(
    [
        st.Page(overview, title="Executive overview", url_path="overview", default=True),
        st.Page(agent_performance, title="Agent performance", url_path="agents"),
    ]
)
VIEW = sidebar_view()
page.run()
