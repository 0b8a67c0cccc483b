"""NOFX executive dashboards: `streamlit run dashboards/app.py` (or `make up`).

Streamlit runs this file as a script on every interaction. The sidebar filters live
here, before the page runs, so they keep their values when the user changes page.
Each page is a module of ``dashboards.views`` (or ``alerts_page``/``usage_page``); the
``dashboards`` package is imported as installed (``pip install -e .``), not from a path.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from dashboards import alerts_page as alerts_view
from dashboards import data
from dashboards import usage_page as usage_view
from dashboards.ui import View, published, sidebar_view, table
from dashboards.views.agents import agent_performance
from dashboards.views.cost import cost_page
from dashboards.views.overview import overview
from dashboards.views.predictions import predictions_page
from dashboards.views.workflows import workflows_page


def with_view(render: Callable[[View | data.WarehouseUnavailable], None]) -> Callable[[], None]:
    """A page that draws this run's filtered view (read below, after the navigation)."""

    def run() -> None:
        render(VIEW)

    run.__name__ = render.__name__
    return run


def alerts_page() -> None:
    alerts_view.alerts_page(published, table)


def api_usage_page() -> None:
    usage_view.usage_page(published, table)


def overview_page(view: View | data.WarehouseUnavailable) -> None:
    overview(view, ALERTS_PAGE)


st.set_page_config(page_title="NOFX", page_icon=":material/hub:", layout="wide")
ALERTS_PAGE = st.Page(alerts_page, title="Alerts", url_path="alerts")
page = st.navigation(
    [
        st.Page(
            with_view(overview_page), title="Executive overview", url_path="overview", default=True
        ),
        st.Page(with_view(agent_performance), title="Agent performance", url_path="agents"),
        st.Page(with_view(workflows_page), title="Workflows", url_path="workflows"),
        st.Page(with_view(predictions_page), title="Predictions", url_path="predictions"),
        st.Page(with_view(cost_page), title="Cost and savings", url_path="cost"),
        ALERTS_PAGE,
        st.Page(api_usage_page, title="API usage", url_path="usage"),
    ]
)
VIEW = sidebar_view()
page.run()
