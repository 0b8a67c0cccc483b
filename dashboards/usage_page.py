"""The API usage page: who calls which endpoint when (user behaviour analytics), from the
``api_usage_hourly`` mart and the ``api_usage`` insights."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import altair as alt
import polars as pl
import streamlit as st


def hourly_by_route(usage: pl.DataFrame, top: int = 6) -> pl.DataFrame:
    """Requests per hour for the busiest routes, the rest summed as 'other'."""
    busiest = (
        usage.group_by("route").agg(pl.col("requests").sum()).sort("requests", descending=True)
    )["route"].head(top)
    return (
        usage.with_columns(
            pl.when(pl.col("route").is_in(busiest.to_list()))
            .then(pl.col("route"))
            .otherwise(pl.lit("other"))
            .alias("endpoint")
        )
        .group_by("hour", "endpoint")
        .agg(pl.col("requests").sum())
        .sort("hour")
    )


def usage_page(published: Callable[[str, str | None], pl.DataFrame | None], table: Any) -> None:
    st.title("API usage")
    st.caption(
        "Requests per API key, tenant, endpoint (route template) and hour, counted by the API "
        "itself: who uses what, when, and which clients keep getting refused."
    )
    usage = published("main.api_usage_hourly", "hour")
    if usage is None:
        return
    if usage.is_empty():
        st.info("No API requests recorded yet: they appear after the next refresh.")
        return
    total = int(usage["requests"].sum())
    cols = st.columns(4)
    cols[0].metric("Requests", f"{total:,}")
    cols[1].metric("API keys", f"{usage['key_id'].n_unique():,}")
    cols[2].metric("Endpoints", f"{usage['route'].n_unique():,}")
    refused = int(usage["client_errors"].sum())
    cols[3].metric("Refused (4xx)", f"{refused / total:.1%}" if total else "n/a")
    chart = (
        alt.Chart(hourly_by_route(usage).to_pandas(), title="Requests per hour by endpoint")
        .mark_area(point=True)  # a point per hour: one hour of data is still visible
        .encode(
            x=alt.X("hour:T", title="hour (UTC)"),
            y=alt.Y("requests:Q", title="requests per hour", stack=True),
            color=alt.Color("endpoint:N", title="endpoint"),
            tooltip=["hour:T", "endpoint:N", "requests:Q"],
        )
    )
    st.altair_chart(chart, use_container_width=True)
    by_key = (
        usage.group_by("tenant_id", "key_id")
        .agg(pl.col("requests").sum(), pl.col("client_errors").sum(), pl.col("route").n_unique())
        .rename({"route": "endpoints"})
        .sort("requests", descending=True)
    )
    st.subheader("By key")
    table(by_key, "api_usage_by_key")
    insights = published("analytics.analytics_insights", "tenant_id, kind")
    if insights is not None and insights.height:
        mine = insights.filter(pl.col("kind") == "api_usage")
        if mine.height:
            st.subheader("Insights")
            for row in mine.to_dicts():
                st.markdown(f"- **{row['tenant_id']}**: {row['title']} ({row['detail']})")
