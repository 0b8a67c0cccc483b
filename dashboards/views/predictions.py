"""Predictive analytics: the models' live accuracy and the model registry."""

from __future__ import annotations

import altair as alt
import polars as pl
import streamlit as st

from dashboards import data, metrics
from dashboards.ui import (
    DAY,
    PERCENT,
    View,
    published,
    table,
)


def predictions_page(view: View | data.WarehouseUnavailable) -> None:
    st.title("Predictive analytics")
    st.caption(
        "Live accuracy scores only predictions made before the outcome was known; "
        "holdout is each model version's score at training time."
    )
    accuracy = published(f"{data.ANALYTICS}.prediction_accuracy", "day")
    models = published(f"{data.ANALYTICS}.prediction_models", "version")
    if accuracy is None or models is None:
        return
    if not isinstance(view, data.WarehouseUnavailable) and view.since is not None:
        accuracy = accuracy.filter(pl.col("day").cast(pl.Date) >= view.since.date())
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
