"""NOFX executive dashboards: `streamlit run dashboards/app.py` (or `make up`)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import altair as alt
import polars as pl
import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # streamlit runs this file as a script

from dashboards import data, metrics

st.set_page_config(page_title="NOFX", page_icon=":material/hub:", layout="wide")


@st.cache_data(ttl=30, show_spinner="reading the warehouse")
def cached_sessions() -> pl.DataFrame:
    return data.load_sessions()


@st.cache_data(ttl=30)
def cached_agent_daily() -> pl.DataFrame | None:
    return data.load_agent_daily()


def download(frame: pl.DataFrame, name: str) -> None:
    st.download_button(
        f"Download {name}.csv",
        frame.write_csv().encode(),
        file_name=f"{name}.csv",
        mime="text/csv",
        key=f"dl-{name}",
    )


def sessions_or_stop() -> pl.DataFrame:
    try:
        sessions = cached_sessions()
    except data.WarehouseUnavailable as exc:
        st.info(f"No data yet. {exc}")
        st.stop()
    st.sidebar.header("Filters")
    window = st.sidebar.selectbox("Time range", ["all", "24 hours", "7 days", "30 days"], index=0)
    tenants = st.sidebar.multiselect("Tenant", sorted(sessions["tenant_id"].unique().to_list()))
    agents = st.sidebar.multiselect(
        "Agent", sorted(sessions["agent_name"].drop_nulls().unique().to_list())
    )
    capabilities = st.sidebar.multiselect(
        "Capability", sorted(sessions["capability"].unique().to_list())
    )
    st.sidebar.caption(f"warehouse: {data.warehouse_path()}")
    if st.sidebar.button("Refresh data"):
        st.cache_data.clear()
        st.rerun()
    return metrics.apply_filters(
        sessions,
        since=metrics.since_for(window, datetime.now(UTC)),
        tenants=tenants,
        agents=agents,
        capabilities=capabilities,
    )


def overview() -> None:
    st.title("Executive overview")
    st.caption("Simulated agents in the demo: costs and outcomes come from the seeded simulator.")
    sessions = sessions_or_stop()
    head = metrics.headline(sessions)
    cols = st.columns(5)
    cols[0].metric("Sessions", f"{head.sessions:,}")
    cols[1].metric("Success rate", metrics.fmt_rate(head.success_rate))
    cols[2].metric("Total cost", metrics.fmt_usd(head.cost_usd))
    cols[3].metric("Avg cost / session", metrics.fmt_usd(head.avg_cost_usd))
    cols[4].metric("Failed", f"{head.failed:,}")

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
            st.altair_chart(
                alt.layer(bars, line).resolve_scale(y="independent"), use_container_width=True
            )
        download(trend, "daily_trend")
    with right:
        st.subheader("Top failure reasons")
        reasons = metrics.failure_reasons(sessions)
        st.dataframe(reasons, hide_index=True, use_container_width=True)
        download(reasons, "failure_reasons")

    st.subheader("Sessions")
    st.dataframe(
        sessions.sort("requested_at", descending=True).head(500),
        hide_index=True,
        use_container_width=True,
    )
    download(sessions, "sessions")


def agent_performance() -> None:
    st.title("Agent performance")
    sessions = sessions_or_stop()
    table = metrics.agent_table(sessions)
    if table.height:
        chart = (
            alt.Chart(table.to_pandas())
            .mark_circle()
            .encode(
                x=alt.X("avg_cost_usd:Q", title="avg cost per session ($)"),
                y=alt.Y("success_rate:Q", title="success rate", axis=alt.Axis(format="%")),
                size=alt.Size("sessions:Q"),
                tooltip=[
                    "agent_name",
                    "sessions",
                    "success_rate",
                    "avg_cost_usd",
                    "p95_duration_ms",
                ],
            )
        )
        st.altair_chart(chart, use_container_width=True)
    st.dataframe(table, hide_index=True, use_container_width=True)
    download(table, "agents")
    daily = cached_agent_daily()
    st.subheader("Daily performance by agent and capability")
    if daily is None:
        st.info("agent_performance_daily is not in the warehouse yet: run `make demo`.")
    else:
        st.dataframe(daily, hide_index=True, use_container_width=True)
        download(daily, "agent_performance_daily")


pages = [
    st.Page(overview, title="Executive overview", default=True),
    st.Page(agent_performance, title="Agent performance", url_path="agents"),
]
st.navigation(pages).run()
