"""`nofx up` on a demo's state, seen by a real headless Chromium, as a user would see it.

The issue's "done when": a session POSTed to the API completes with no manual step (the
worker runs it) and appears on the overview after the next refresh (Dagster's new-events
sensor, on by default); /docs renders with the internet cut off; every dashboard page
shows numbers and charts; Dagster's asset graph and automation page and MLflow's
registry show the demo's assets, sensors and models; SIGTERM stops every server (this module
is the suite's one `nofx up`: starting Dagster alone costs about a minute). Screenshots go to
tests/artifacts/screenshots/ (docs/guides/img/ holds small copies for the guides).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import duckdb
import httpx
import pytest
from playwright.sync_api import Error as PlaywrightError

from tests.dashboards.test_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    chromium_or_skip,
    shown_metrics,
    wait_until_drawn,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "tests" / "artifacts" / "screenshots"
HEALTH = {
    "api": "/api/v1/health",
    "dagster": "/server_info",
    "streamlit": "/_stcore/health",
    "mlflow": "/health",
}
PAGES = ("overview", "agents", "workflows", "predictions", "cost", "alerts")


@dataclass(frozen=True)
class Up:
    urls: dict[str, str]
    key: str
    home: Path
    sessions_before: int  # in the warehouse when `nofx up` started
    session_id: str  # POSTed as soon as the API answered, before Dagster was up
    proc: subprocess.Popen  # `nofx up` itself (the last test stops it)
    log: Path  # what it and its servers printed


def post_session(api: str, key: str) -> str:
    body = {"task": {"prompt": "summarise the incident report", "capability": "code.generate"}}
    created = httpx.post(
        f"{api}/api/v1/orchestration/sessions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert created.status_code == 202, created.text
    return str(created.json()["session_id"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def up(demo_home: Path, tmp_path_factory) -> Iterator[Up]:
    """`nofx up` on a copy of what `nofx demo` left (the shared home stays untouched)."""
    chromium_or_skip()
    home = tmp_path_factory.mktemp("up") / "nofx-home"
    shutil.copytree(demo_home, home)
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as conn:
        before = conn.execute("select count(*) from main.agent_sessions").fetchall()[0][0]
    ports = {name: free_port() for name in HEALTH}
    env = {
        # mlflow.set_tracking_uri (earlier tests, in this process) also sets MLFLOW_TRACKING_URI
        # in os.environ: passed on, MLflow would serve another test's registry
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("NOFX_", "DAGSTER_", "MLFLOW_"))
        },
        "NOFX_HOME": str(home),
        **{f"NOFX_{n.upper()}_PORT": str(p) for n, p in ports.items()},
    }
    # a file, not a pipe: four servers' logs would fill an unread pipe and block them all
    log = (home.parent / "up.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "nofx.cli", "up", "--worker-time-scale", "0"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    waiting = dict(HEALTH)
    session_id = None
    deadline = time.monotonic() + 180
    while waiting and time.monotonic() < deadline and proc.poll() is None:
        for name, path in list(waiting.items()):
            try:
                if httpx.get(urls[name] + path, timeout=2).status_code == 200:
                    del waiting[name]
            except httpx.HTTPError:
                pass
        if session_id is None and "api" not in waiting:
            # a user's first request, while Dagster is still starting: nobody clicks anything
            session_id = post_session(urls["api"], (home / "admin-api-key").read_text().strip())
        time.sleep(1)
    try:
        assert not waiting, (
            f"not answering after 180 s: {sorted(waiting)}\n"
            + (home.parent / "up.log").read_text()[-3000:]
        )
        assert session_id is not None
        key = (home / "admin-api-key").read_text().strip()
        yield Up(urls, key, home, int(before), session_id, proc, home.parent / "up.log")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def browser(up: Up) -> Iterator:
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def offline_page(browser):
    """A page whose requests to anywhere but this machine fail, as without internet."""
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.set_default_navigation_timeout(90_000)  # a shared 2-core machine, busy with Dagster
    blocked: list[str] = []

    def only_loopback(route) -> None:
        host = urlparse(route.request.url).hostname
        if host in ("127.0.0.1", "localhost") or route.request.url.startswith("data:"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", only_loopback)
    return page, blocked


def overview_sessions(page, url: str) -> int:
    """The Sessions number on the overview, read after the page's own Refresh button."""
    page.goto(url + "/", wait_until="domcontentloaded")
    page.wait_for_selector('[data-testid="stMetricValue"]', timeout=60_000)
    page.get_by_role("button", name="Refresh data").click()
    page.wait_for_timeout(1500)
    wait_until_drawn(page)
    return int(shown_metrics(page)["Sessions"].replace(",", ""))


def test_a_session_posted_after_up_runs_and_reaches_the_overview(up: Up, browser) -> None:
    auth = {"Authorization": f"Bearer {up.key}"}
    url = f"{up.urls['api']}/api/v1/orchestration/sessions/{up.session_id}"
    deadline = time.monotonic() + 60
    status = "requested"
    while status not in ("succeeded", "failed") and time.monotonic() < deadline:
        status = httpx.get(url, headers=auth, timeout=30).json()["status"]
        time.sleep(0.5)
    assert status in ("succeeded", "failed"), f"nobody ran {up.session_id}: still {status}"
    # Dagster's new-events sensor (on by default) refreshes the warehouse; the overview
    # shows the session after its Refresh button (or its 30 s cache) once that run is done
    page, _ = offline_page(browser)
    deadline = time.monotonic() + 480
    shown = up.sessions_before
    while shown < up.sessions_before + 1 and time.monotonic() < deadline:
        # the warehouse may be busy with the refresh: then try at the next tick
        with contextlib.suppress(PlaywrightError, KeyError, ValueError):
            shown = overview_sessions(page, up.urls["streamlit"])
        if shown < up.sessions_before + 1:
            time.sleep(10)
    page.screenshot(path=str(SHOTS / "up-overview.png"))
    assert shown == up.sessions_before + 1, (
        f"the overview shows {shown} sessions ({up.sessions_before} before the POST)"
    )


def test_api_docs_render_with_the_internet_cut_off(up: Up, browser) -> None:
    page, blocked = offline_page(browser)
    page.goto(up.urls["api"] + "/docs", wait_until="domcontentloaded", timeout=90_000)
    page.wait_for_selector(".swagger-ui .info .title", timeout=60_000)
    assert "NOFX control plane" in page.locator(".swagger-ui .info .title").inner_text()
    page.wait_for_selector(".opblock", timeout=30_000)
    assert page.locator(".opblock").count() >= 20  # every route, from the local spec
    page.screenshot(path=str(SHOTS / "api-docs.png"))
    page.goto(up.urls["api"] + "/redoc", wait_until="domcontentloaded", timeout=90_000)
    page.wait_for_selector("h1", timeout=60_000)
    assert "NOFX control plane" in page.locator("h1").first.inner_text()
    assert page.get_by_text("List alerts, most recent activity first").count() >= 1
    assert blocked == [], f"the docs tried the internet: {blocked[:5]}"


def test_every_dashboard_page_shows_numbers_and_drawn_charts(up: Up, browser) -> None:
    page, blocked = offline_page(browser)
    for name in PAGES:
        page.goto(
            f"{up.urls['streamlit']}/{'' if name == 'overview' else name}",
            wait_until="domcontentloaded",
        )
        wait_until_drawn(page)
        assert page.locator('[data-testid="stException"]').count() == 0, name
        values = shown_metrics(page)
        assert values and any(any(c.isdigit() for c in v) for v in values.values()), name
        assert "No data yet" not in page.content(), name
        charts = page.locator('[data-testid="stVegaLiteChart"]')
        if name != "alerts":  # the alerts page is cards and a table, no chart
            assert charts.count() >= 1, f"{name} has no chart"
        for i in range(charts.count()):  # drawn: a canvas or svg with a size, not a blank box
            box = charts.nth(i).locator("canvas, svg").first.bounding_box()
            assert box and box["width"] > 100 and box["height"] > 100, (name, i)
        assert "warehouse.duckdb" not in page.content(), f"{name} shows the warehouse path"
        page.screenshot(path=str(SHOTS / f"up-{name}.png"))
    # Streamlit is configured for executives: no Deploy button, no usage statistics
    assert page.get_by_role("button", name="Deploy").count() == 0
    assert not [u for u in blocked if "segment" in u or "webhooks.fivetran" in u], blocked


def test_dagster_shows_the_asset_graph_and_automation_on(up: Up, browser) -> None:
    page, _ = offline_page(browser)
    page.goto(up.urls["dagster"] + "/asset-groups", wait_until="domcontentloaded")
    page.wait_for_selector("text=Global asset lineage", timeout=90_000)
    skip = page.get_by_role("button", name="Skip")  # Dagster's newsletter prompt
    with contextlib.suppress(PlaywrightError):
        skip.click(timeout=5_000)
    for group in ("ingest", "transform", "daily", "ml", "operations"):  # the pipeline's stages
        page.wait_for_selector(f"text={group}", timeout=30_000)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(SHOTS / "dagster-lineage.png"))
    page.goto(up.urls["dagster"] + "/assets", wait_until="domcontentloaded")
    for asset in ("raw_events", "agent_sessions", "agent_performance_daily", "alerts"):
        page.wait_for_selector(f"text={asset}", timeout=60_000)
    page.screenshot(path=str(SHOTS / "dagster-assets.png"))
    page.goto(up.urls["dagster"] + "/automation", wait_until="domcontentloaded")
    for name in ("new_events_sensor", "nightly_retrain", "daily_rollup_schedule"):
        page.wait_for_selector(f"text={name}", timeout=60_000)
    page.wait_for_timeout(1000)
    page.screenshot(path=str(SHOTS / "dagster-automation.png"))
    # on, without a click: the instance's own record of each sensor and schedule
    query = """{ workspaceOrError { ... on Workspace { locationEntries { locationOrLoadError {
      ... on RepositoryLocation { repositories { sensors { name sensorState { status } }
      schedules { name scheduleState { status } } } } } } } } }"""
    answer = httpx.post(up.urls["dagster"] + "/graphql", json={"query": query}, timeout=60)
    (entry,) = answer.json()["data"]["workspaceOrError"]["locationEntries"]
    (repository,) = entry["locationOrLoadError"]["repositories"]
    status = {s["name"]: s["sensorState"]["status"] for s in repository["sensors"]}
    status |= {s["name"]: s["scheduleState"]["status"] for s in repository["schedules"]}
    assert status == {
        "new_events_sensor": "RUNNING",
        "requested_sessions_sensor": "STOPPED",  # the worker runs sessions
        "forecasts_materialised_sensor": "RUNNING",  # alerts follow new forecasts
        "nightly_retrain": "RUNNING",
        "daily_rollup_schedule": "RUNNING",
    }


def test_mlflow_registry_lists_the_models(up: Up, browser) -> None:
    page, _ = offline_page(browser)
    page.goto(up.urls["mlflow"] + "/#/models", wait_until="domcontentloaded")
    page.wait_for_selector("text=nofx-session-failure", timeout=60_000)
    page.screenshot(path=str(SHOTS / "mlflow-models.png"))


def test_sigterm_stops_every_server_and_frees_its_port(up: Up) -> None:
    """Last in this module (it stops `nofx up`): every address was printed, the worker ran
    the session POSTed at start, and after SIGTERM no port is served any more."""
    up.proc.send_signal(signal.SIGTERM)
    assert up.proc.wait(timeout=60) is not None
    output = up.log.read_text()
    for name, url in up.urls.items():
        assert url.removeprefix("http://") in output, f"{name}'s address is not printed"
    assert "polling sqlite store" in output  # the worker ran beside the UIs
    assert re.search(r"ran \d+ sessions", output), output[-3000:]
    time.sleep(1)
    for url in up.urls.values():
        port = int(url.rsplit(":", 1)[1])
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still served after stop"
