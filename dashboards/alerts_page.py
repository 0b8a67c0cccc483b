"""The Alerts page: your tenant's alerts through the API with your key (acknowledge,
resolve), and the fleet's published history from the warehouse."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import polars as pl
import streamlit as st

from dashboards import api

RULES_CAPTION = (
    "Rules: orchestration failures > 1%, workflow delays > 10%, prediction accuracy < 85%, "
    "pool utilisation > 80%, API p95 > 200 ms, any agent anomaly episode; their predictive "
    "twins (…_forecast) fire when a forecast says the threshold will be crossed within the "
    "horizon. Tenants add their own with PUT /api/v1/alert-rules/{rule_id}, including on "
    "custom metrics. Evaluated after every refresh."
)


def your_alerts(key: str) -> None:
    """Open and acknowledged alerts of the key's tenant, with the actions the API allows."""
    done: dict[str, str] = st.session_state.setdefault("alert_actions", {})
    try:
        with httpx.Client(base_url=api.api_url(), timeout=10) as client:
            active = api.list_alerts(client, key, "open") + api.list_alerts(
                client, key, "acknowledged"
            )
    except api.ApiRefused as exc:
        st.error(str(exc))
        return
    if not active:
        st.write("No open alerts for your tenant.")
    for alert in active:
        with st.container(border=True):
            status = alert["status"]
            who = (
                f" · acknowledged by {alert['acknowledged_by']}"
                if alert.get("acknowledged_by")
                else ""
            )
            st.markdown(f"**{alert['severity'].upper()}** · {status}{who} · {alert['message']}")
            st.caption(
                f"rule {alert['rule_id']} · value {alert['value']:.4g} against "
                f"{alert['threshold']:.4g} · firing in {alert['occurrences']} evaluation(s) "
                f"since {alert['first_seen_at'][:16]} UTC"
            )
            note = st.text_input(
                "Note", key=f"note-{alert['alert_id']}", placeholder="what was done"
            )
            cols = st.columns(2)
            actions: list[tuple[str, Callable[..., Any]]] = [("Resolve", api.resolve_alert)]
            if status == "open":
                actions.insert(0, ("Acknowledge", api.acknowledge_alert))
            for col, (label, action) in zip(cols, actions, strict=False):
                if col.button(label, key=f"{label}-{alert['alert_id']}"):
                    try:
                        with httpx.Client(base_url=api.api_url(), timeout=10) as client:
                            action(client, key, alert["alert_id"], note)
                    except api.ApiRefused as exc:
                        st.error(str(exc))
                    else:
                        done[alert["alert_id"]] = f"{label.lower()}d: {alert['message']}"
                        st.rerun()
    for message in done.values():
        st.success(message.capitalize())


def alerts_page(published: Callable[[str, str | None], pl.DataFrame | None], table: Any) -> None:
    st.title("Alerts")
    st.caption(RULES_CAPTION)
    key = st.text_input(
        "Your API key, to see and act on your tenant's alerts",
        type="password",
        key="api_key",
        help="sent only to the NOFX API, which shows you your tenant's alerts and records "
        "who acknowledged or resolved what; `nofx keys create --name me --scope write`",
    )
    if key:
        st.subheader("Your alerts")
        your_alerts(key)
    alerts = published("analytics.alerts", "last_seen_at desc")
    if alerts is None:
        return
    open_alerts = alerts.filter(pl.col("status") == "open")
    cols = st.columns(4)
    cols[0].metric("Open alerts", f"{open_alerts.height:,}")
    cols[1].metric("Critical", f"{open_alerts.filter(pl.col('severity') == 'critical').height:,}")
    cols[2].metric("Acknowledged", f"{alerts.filter(pl.col('status') == 'acknowledged').height:,}")
    cols[3].metric("Resolved", f"{alerts.filter(pl.col('status') == 'resolved').height:,}")
    evaluations = published("analytics.alert_evaluations", None)
    if evaluations is not None and evaluations.height:
        ran = evaluations.group_by("rule_id").agg(
            pl.len().alias("evaluations"), pl.col("evaluated_at").max().alias("last")
        )
        st.caption(
            "Rules evaluated: "
            + ", ".join(
                f"{r['rule_id']} ({r['evaluations']})" for r in ran.sort("rule_id").to_dicts()
            )
        )
    st.subheader("History (every tenant, from the last refresh)")
    table(alerts, "alerts", message=st.column_config.TextColumn("message", width="large"))
