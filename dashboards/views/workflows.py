"""Workflow execution: planned against realised makespan and each run's critical path."""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from dashboards import data, metrics
from dashboards.ui import (
    USD,
    View,
    cached_workflow_run,
    explain_unavailable,
    published,
    table,
)


def workflows_page(view: View | data.WarehouseUnavailable) -> None:
    st.title("Workflow execution")
    st.caption(
        "Planned makespan is the critical path of the steps' estimates; the realised one "
        "uses the steps' measured latencies (simulated agents in the demo)."
    )
    runs = published("main.workflow_executions", "requested_at")
    if runs is None:
        return
    if view is not None and not isinstance(view, data.WarehouseUnavailable) and view.since:
        runs = runs.filter(pl.col("requested_at") >= view.since.replace(tzinfo=None))
    if runs.is_empty():
        st.info("No workflow runs yet: submit one with pattern 'workflow' (see nofx/workflows).")
        return
    done = runs.filter(pl.col("status").is_in(["succeeded", "failed"]))
    ratio = (runs["delay_ratio"].drop_nulls() + 1.0) if "delay_ratio" in runs.columns else None
    median = None if ratio is None or ratio.is_empty() else ratio.median()
    cols = st.columns(4)
    cols[0].metric("Workflow runs", f"{runs.height:,}")
    rate = done["succeeded"].mean() if done.height else None  # a float, or None for no rows
    cols[1].metric(
        "Success rate", metrics.fmt_rate(float(rate) if isinstance(rate, int | float) else None)
    )
    cols[2].metric("Steps retried", f"{int(runs['steps_retried'].sum()):,}")
    cols[3].metric(
        "Realised / planned (median)",
        f"{median:.2f}x" if isinstance(median, int | float) else "n/a",
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
