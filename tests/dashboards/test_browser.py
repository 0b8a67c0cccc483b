"""The dashboards in a real headless Chromium, on the warehouse the real pipeline built.

Every page loads without a Streamlit exception, the headline numbers equal a
direct query of the warehouse, and a screenshot of each page is saved under
tests/artifacts/screenshots/.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import pytest

from tests.pipeline_fixture import PipelineRun

pytestmark = [pytest.mark.browser, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "tests" / "artifacts" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
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


@pytest.fixture(scope="module")
def dashboard(pipeline: PipelineRun) -> Iterator[str]:
    if not Path(CHROMIUM).exists():
        pytest.skip(
            "Debian's chromium is not installed: run scripts/ensure-chromium.sh (make test does)"
        )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "NOFX_HOME": str(pipeline.settings.home)}
    env.pop("NOFX_WAREHOUSE_PATH", None)
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


def warehouse_numbers(pipeline: PipelineRun) -> dict[str, str]:
    with duckdb.connect(str(pipeline.settings.warehouse_path), read_only=True) as conn:
        n, ok, failed, cost = conn.execute(
            "select count(*), count(*) filter (where status = 'succeeded'), "
            "count(*) filter (where status = 'failed'), sum(cost_usd) from main.agent_sessions"
        ).fetchone()
    return {
        "Sessions": f"{n:,}",
        "Success rate": f"{ok / (ok + failed):.1%}",
        "Total cost": f"${cost:,.4f}",
        "Failed": f"{failed:,}",
    }


def test_every_page_loads_and_shows_the_warehouse_numbers(
    dashboard: str, pipeline: PipelineRun
) -> None:
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    expected = warehouse_numbers(pipeline)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        for name, path, ready in (
            ("overview", "/", '[data-testid="stMetric"]'),
            ("agents", "/agents", '[data-testid="stDataFrame"]'),
        ):
            page.goto(dashboard + path)
            page.wait_for_selector(ready, timeout=45_000)
            page.wait_for_load_state("networkidle")
            page.wait_for_timeout(1500)  # let charts render before the screenshot
            assert page.locator('[data-testid="stException"]').count() == 0, (
                f"{name} raised an exception"
            )
            assert "Page not found" not in page.content()
            page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
            if name == "overview":
                labels = page.locator('[data-testid="stMetricLabel"]').all_inner_texts()
                values = page.locator('[data-testid="stMetricValue"]').all_inner_texts()
                shown = dict(
                    zip(
                        [label.strip() for label in labels],
                        [v.strip() for v in values],
                        strict=True,
                    )
                )
                for label, value in expected.items():
                    assert shown[label] == value, (label, shown)
            else:
                assert "atlas" in page.content() or "sim" in page.content()
        browser.close()
    assert (SHOTS / "overview.png").stat().st_size > 10_000
