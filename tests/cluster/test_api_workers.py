"""The API as several uvicorn worker processes on one store: every worker sees the same data,
and a key's rate limit is one limit for all of them, not one per worker."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nofx.security import ApiKeyService, Scope
from nofx.store import EventStore
from tests.conftest import postgres_url

pytestmark = pytest.mark.slow
WORKERS = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'nofx.db'}"
        return
    if not postgres_url():
        pytest.skip("NOFX_TEST_POSTGRES_URL is not set (CI sets it; locally export it to run this)")
    yield request.getfixturevalue("pg_url")


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[tuple[str, EventStore]]:
    store = EventStore(database_url)  # migrates before the workers race to
    port = free_port()
    env = {
        **os.environ,
        "NOFX_DATABASE_URL": database_url,
        "NOFX_HOME": str(tmp_path / "home"),
        "NOFX_API_AUTH": "on",
    }
    command = [sys.executable, "-m", "uvicorn", "nofx.api.app:create_app", "--factory"]
    command += ["--port", str(port), "--workers", str(WORKERS), "--log-level", "warning"]
    process = subprocess.Popen(command, env=env, start_new_session=True, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"uvicorn did not start: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            time.sleep(0.2)
        yield base, store
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        store.dispose()


def fresh_connection_get(url: str, headers: dict[str, str]) -> httpx.Response:
    """A new connection per request, so the kernel spreads requests over the workers."""
    with httpx.Client(headers=headers, timeout=10) as client:
        return client.get(url)


def test_workers_share_the_data_and_one_rate_limit(api: tuple[str, EventStore]) -> None:
    base, store = api
    keys = ApiKeyService(store)
    writer = keys.create("default", "ci-writer", {Scope.WRITE}).plaintext
    limited = keys.create("default", "ci-limited", {Scope.READ}, rate_per_s=1.0, burst=10).plaintext

    # an agent created through one worker is read back through all of them
    with httpx.Client(headers={"Authorization": f"Bearer {writer}"}, timeout=10) as client:
        created = client.post(
            base + "/api/v1/agents",
            json={"name": "shared", "capabilities": [{"name": "code.generate"}]},
        )
        assert created.status_code == 201, created.text
    agent_url = base + f"/api/v1/agents/{created.json()['agent_id']}"
    pids = set()
    for _ in range(30):
        health = fresh_connection_get(base + "/api/v1/health", {}).json()
        pids.add(health["worker_pid"])
        assert fresh_connection_get(agent_url, {"Authorization": f"Bearer {writer}"}).is_success
    assert len(pids) >= 2, "requests should have reached more than one worker"

    # 40 quick requests with a key allowed a burst of 10 and 1/s: one shared bucket lets
    # ~10-15 through; per-worker buckets would let up to 3 x 10 through
    started = time.monotonic()
    codes = [
        fresh_connection_get(agent_url, {"Authorization": f"Bearer {limited}"}).status_code
        for _ in range(40)
    ]
    elapsed = time.monotonic() - started
    allowed = codes.count(200)
    assert set(codes) <= {200, 429}
    assert 10 <= allowed <= 10 + int(elapsed * 1.0) + 1, (allowed, elapsed)
