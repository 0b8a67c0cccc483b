"""The dashboards in a real headless Chromium, on a warehouse built from real sessions.

Every page loads without a Streamlit exception, the numbers it shows equal a direct
query of the warehouse (the agents table through its own CSV export), and a
screenshot of each page is saved under tests/artifacts/screenshots/.
"""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import pytest

from tests.dashboards.conftest import DashboardWarehouse

pytestmark = [pytest.mark.browser, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "tests" / "artifacts" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_or_skip() -> None:
    """Debian's chromium, installed by scripts/ensure-chromium.sh when missing (never
    `playwright install`); skip only when it is absent and cannot be installed."""
    if CHROMIUM.exists():
        return
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "ensure-chromium.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing and could not be installed "
            f"(scripts/ensure-chromium.sh said: {(done.stdout + done.stderr).strip()[-500:]})"
        )


@pytest.fixture(scope="module")
def dashboard(dashboard_warehouse: DashboardWarehouse) -> Iterator[str]:
    chromium_or_skip()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "NOFX_HOME": str(dashboard_warehouse.settings.home)}
    for var in ("NOFX_WAREHOUSE_PATH", "NOFX_MART_SCHEMA"):
        env.pop(var, None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(REPO / "dashboards/app.py"),
            "--server.headless",
            "true",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--browser.gatherUsageStats",
            "false",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/_stcore/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail(
            f"streamlit did not start: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}"
        )
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def warehouse_numbers(warehouse: Path) -> tuple[dict[str, str], dict[str, tuple[int, float]]]:
    """What the pages should show, straight from the mart: headline numbers and per agent."""
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        n, ok, failed, waiting, cost, agents, ours, tasks = conn.execute(
            "select count(*), count(*) filter (where status = 'succeeded'), "
            "count(*) filter (where status = 'failed'), "
            "count(*) filter (where status in ('requested', 'running')), sum(cost_usd), "
            "count(distinct agent_name), "
            "count(*) filter (where failure_class = 'orchestration'), "
            "count(*) filter (where failure_class = 'task') from main.agent_sessions"
        ).fetchone()
        per_agent = conn.execute(
            "select agent_name, count(*), count(*) filter (where status = 'succeeded') "
            "/ count(*) filter (where status in ('succeeded', 'failed')) "
            "from main.agent_sessions where agent_name is not null group by 1"
        ).fetchall()
    headline = {
        "Sessions": f"{n:,}",
        "Success rate": f"{ok / (ok + failed):.1%}",
        "Total cost": f"${cost:,.4f}",
        "Open": f"{waiting:,}",
        "Orchestration failures": f"{ours / (ok + failed):.1%}",
        "Task failures": f"{tasks / (ok + failed):.1%}",
        "Agents": f"{agents:,}",
    }
    return headline, {name: (count, rate) for name, count, rate in per_agent}


def operational_numbers(warehouse: Path) -> dict[str, str]:
    """What the workflow, prediction, cost and alert pages should count."""
    with duckdb.connect(str(warehouse), read_only=True) as conn:

        def count(sql: str) -> str:
            return f"{conn.execute(sql).fetchall()[0][0]:,}"

        return {
            "Workflow runs": count("select count(*) from main.workflow_executions"),
            "Model versions": count("select count(*) from analytics.prediction_models"),
            "Recommendations": count("select count(*) from analytics.recommendations"),
            "Open alerts": count("select count(*) from analytics.alerts where status = 'open'"),
        }


def api_requests(warehouse: Path) -> int | None:
    """Requests in the API usage mart; None when the mart is not published."""
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        published = conn.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = 'main' and table_name = 'api_usage_hourly'"
        ).fetchall()[0][0]
        if not published:
            return None
        return int(
            conn.execute("select coalesce(sum(requests), 0) from main.api_usage_hourly").fetchall()[
                0
            ][0]
        )


def wait_until_drawn(page, timeout_ms: int = 60_000) -> None:
    """Until the page's script has run to its end: its first numbers, then Streamlit's own
    script state back at "notRunning". A fixed pause after the first number lost the
    charts below it on a loaded CI host (the script was still running)."""
    page.wait_for_selector('[data-testid="stMetricValue"]', timeout=timeout_ms)
    page.wait_for_selector(
        '[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=timeout_ms
    )
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(500)  # vega draws its canvas after the element is in the page


METRIC_PAIRS_JS = """metrics => metrics.map(m => [
    (m.querySelector('[data-testid="stMetricLabel"]')?.innerText ?? '').trim(),
    (m.querySelector('[data-testid="stMetricValue"]')?.innerText ?? '').trim(),
])"""


def shown_metrics(page) -> dict[str, str]:
    """Label -> value of every metric, read in one pass inside the page, each pair from
    its own metric element. Two reads (all labels, then all values) raced a rerender on
    a loaded CI host and paired a page's labels with more values than it had labels."""
    pairs = page.eval_on_selector_all('[data-testid="stMetric"]', METRIC_PAIRS_JS)
    unlabelled = [value for label, value in pairs if not label]
    assert not unlabelled, f"metrics without a label: {unlabelled}"
    return dict(pairs)


def test_every_page_loads_and_shows_the_warehouse_numbers(
    dashboard: str, dashboard_warehouse: DashboardWarehouse, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    headline, per_agent = warehouse_numbers(dashboard_warehouse.settings.warehouse_path)
    pages = (
        (
            "overview",
            "/",
            (
                "Sessions",
                "Success rate",
                "Total cost",
                "Open",
                "Orchestration failures",
                "Task failures",
            ),
        ),
        (
            "agents",
            "/agents",
            ("Agents", "Sessions", "Success rate", "Total cost", "Orchestration failures"),
        ),
    )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        for name, path, labels in pages:
            page.goto(dashboard + path)
            wait_until_drawn(page)
            page.wait_for_selector('[data-testid="stVegaLiteChart"]', timeout=30_000)
            assert page.locator('[data-testid="stException"]').count() == 0, f"{name} raised"
            assert "Page not found" not in page.content()
            page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
            shown = shown_metrics(page)
            assert {label: shown[label] for label in labels} == {
                label: headline[label] for label in labels
            }, name
        # the operational pages: they load, draw, and count what the warehouse holds
        expected = operational_numbers(dashboard_warehouse.settings.warehouse_path)
        for name, labels in (
            ("workflows", ("Workflow runs",)),
            ("predictions", ("Model versions",)),
            ("cost", ("Recommendations",)),
            ("alerts", ("Open alerts",)),
        ):
            page.goto(f"{dashboard}/{name}")
            wait_until_drawn(page)
            assert page.locator('[data-testid="stException"]').count() == 0, f"{name} raised"
            page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
            shown = shown_metrics(page)
            assert {label: shown[label] for label in labels} == {
                label: expected[label] for label in labels
            }, name
        # API usage: the requests the usage mart counted, or what to run when it has none
        requests = api_requests(dashboard_warehouse.settings.warehouse_path)
        page.goto(f"{dashboard}/usage")
        if requests is None:
            page.get_by_text("main.api_usage_hourly is not in the warehouse yet").wait_for(
                timeout=45_000
            )
        elif requests == 0:
            page.get_by_text("No API requests recorded yet").wait_for(timeout=45_000)
        else:
            page.wait_for_selector('[data-testid="stVegaLiteChart"]', timeout=45_000)
            assert shown_metrics(page)["Requests"] == f"{requests:,}"
        assert page.locator('[data-testid="stException"]').count() == 0, "usage raised"
        page.screenshot(path=str(SHOTS / "usage.png"), full_page=True)
        page.goto(f"{dashboard}/cost")
        page.wait_for_selector('[data-testid="stMetricValue"]', timeout=45_000)
        page.wait_for_load_state("networkidle")
        # the duration forecasts the pipeline published, exportable; usage waits for a week.
        # The forecasts section draws after the metrics: wait for it (a loaded CI runner took
        # longer than networkidle).
        download = page.get_by_role("button", name="Download step_duration_forecasts.csv")
        download.wait_for(timeout=30_000)
        assert download.count() == 1
        assert page.get_by_text("Usage forecasts start once a tenant has a week").count() == 1
        page.goto(dashboard + "/")
        page.wait_for_selector('[data-testid="stMetricValue"]', timeout=45_000)
        page.wait_for_load_state("networkidle")
        overview = shown_metrics(page)
        assert overview["Open alerts"] == expected["Open alerts"]
        assert overview["SLA: orchestration failures ≤ 1%"] in ("met", "breached")
        page.goto(f"{dashboard}/workflows")
        page.wait_for_selector('[data-testid="stGraphVizChart"] svg', timeout=45_000)
        assert page.locator('[data-testid="stGraphVizChart"] svg g.node').count() >= 2
        page.goto(f"{dashboard}/agents")
        page.wait_for_selector('[data-testid="stDataFrame"]', timeout=30_000)
        # the agents table, through its CSV export, agrees with the mart agent by agent
        with page.expect_download() as download:
            page.get_by_role("button", name="Download agents.csv").click()
        exported = tmp_path / "agents.csv"
        download.value.save_as(exported)
        with exported.open() as f:
            rows = {r["agent_name"]: r for r in csv.DictReader(f)}
        assert set(rows) == set(per_agent)
        for agent, (sessions, rate) in per_agent.items():
            assert int(rows[agent]["sessions"]) == sessions, agent
            assert float(rows[agent]["success_rate"]) == pytest.approx(rate), agent
        daily = "agent_performance_daily is not in the warehouse yet"
        assert (daily in page.content()) == (dashboard_warehouse.built_by == "store")
        browser.close()
    assert (SHOTS / "overview.png").stat().st_size > 10_000
