"""What every page shares: the cached warehouse reads, the sidebar's filtered view and
tables that export the CSV of what they show."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl
import streamlit as st

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
