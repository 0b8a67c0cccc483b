"""The Alerts and API usage pages run headless on published tables: counts, the rules that
were evaluated, the usage chart's numbers and the api_usage insights."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def alerts_script() -> None:
    from datetime import UTC, datetime

    import polars as pl
    import streamlit as st

    from dashboards.alerts_page import alerts_page

    now = datetime(2026, 3, 9, tzinfo=UTC)
    tables = {
        "analytics.alerts": pl.DataFrame(
            {
                "alert_id": ["a1", "a2", "a3"],
                "status": ["open", "acknowledged", "resolved"],
                "severity": ["critical", "warning", "warning"],
                "message": ["m1", "m2", "m3"],
                "last_seen_at": [now] * 3,
            }
        ),
        "analytics.alert_evaluations": pl.DataFrame(
            {"tenant_id": ["t", "t"], "rule_id": ["workflow_delay"] * 2, "evaluated_at": [now] * 2}
        ),
    }
    alerts_page(lambda name, order=None: tables.get(name), lambda frame, name, **kw: st.write(name))


def usage_script() -> None:
    from datetime import datetime

    import polars as pl
    import streamlit as st

    from dashboards.usage_page import usage_page

    tables = {
        "main.api_usage_hourly": pl.DataFrame(
            {
                "tenant_id": ["t", "t"],
                "key_id": ["k1", "k2"],
                "method": ["GET", "GET"],
                "route": ["/api/v1/alerts", "/api/v1/agents"],
                "hour": [datetime(2026, 3, 9, 10), datetime(2026, 3, 9, 11)],
                "requests": [30, 10],
                "client_errors": [0, 4],
            }
        ),
        "analytics.analytics_insights": pl.DataFrame(
            {"tenant_id": ["t"], "kind": ["api_usage"], "title": ["peak at 10"], "detail": ["d"]}
        ),
    }
    usage_page(lambda name, order=None: tables.get(name), lambda frame, name, **kw: st.write(name))


def test_the_alerts_page_counts_by_status_and_lists_evaluated_rules() -> None:
    at = AppTest.from_function(alerts_script, default_timeout=30).run()
    assert not at.exception
    shown = {m.label: m.value for m in at.metric}
    assert shown == {"Open alerts": "1", "Critical": "1", "Acknowledged": "1", "Resolved": "1"}
    assert "workflow_delay (2)" in " ".join(c.value for c in at.caption)


def test_the_usage_page_shows_requests_keys_and_refusals() -> None:
    at = AppTest.from_function(usage_script, default_timeout=30).run()
    assert not at.exception
    shown = {m.label: m.value for m in at.metric}
    assert shown == {"Requests": "40", "API keys": "2", "Endpoints": "2", "Refused (4xx)": "10.0%"}
    assert "peak at 10" in " ".join(m.value for m in at.markdown)
