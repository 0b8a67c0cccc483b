"""`nofx up` serves the API, Dagster, Streamlit and MLflow, each answering on its port, runs
requested sessions with its worker (no manual step), and stops them all."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
HEALTH = {
    "api": "/api/v1/health",
    "dagster": "/server_info",
    "streamlit": "/_stcore/health",
    "mlflow": "/health",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_one_session_over_http(api: str, key: str) -> dict:
    """Register a simulated agent and POST a session, as a user would; wait for its outcome."""
    auth = {"Authorization": f"Bearer {key}"}
    agent = {"name": "up-coder", "capabilities": [{"name": "code.generate", "proficiency": 4}]}
    assert httpx.post(f"{api}/api/v1/agents", json=agent, headers=auth).status_code == 201
    body = {"task": {"prompt": "write a parser", "capability": "code.generate"}}
    created = httpx.post(f"{api}/api/v1/orchestration/sessions", json=body, headers=auth)
    assert created.status_code == 202, created.text
    session_id = created.json()["session_id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        session = httpx.get(
            f"{api}/api/v1/orchestration/sessions/{session_id}", headers=auth
        ).json()
        if session["status"] in ("succeeded", "failed"):
            return session
        time.sleep(0.5)
    raise AssertionError(f"session {session_id} still {session['status']} after 60 s")


def test_up_serves_all_four_uis_runs_sessions_then_stops_them(
    nofx_home: Path, tmp_path: Path
) -> None:
    ports = {name: free_port() for name in HEALTH}
    env = {**os.environ, **{f"NOFX_{n.upper()}_PORT": str(p) for n, p in ports.items()}}
    # a file, not a pipe: the servers' logs would fill an unread pipe and block them
    log_path = tmp_path / "up.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "nofx.cli", "up", "--worker-time-scale", "0"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    answered: dict[str, int] = {}
    try:
        # Dagster alone loads its definitions in ~50 s on a loaded 2-core host
        deadline = time.monotonic() + 240
        while len(answered) < len(HEALTH) and time.monotonic() < deadline and proc.poll() is None:
            for name, path in HEALTH.items():
                if name in answered:
                    continue
                try:
                    response = httpx.get(f"http://127.0.0.1:{ports[name]}{path}", timeout=2)
                except httpx.HTTPError:
                    continue
                if response.status_code == 200:
                    answered[name] = response.status_code
            time.sleep(0.5)
        if len(answered) == len(HEALTH):
            key = (nofx_home / "admin-api-key").read_text().strip()
            session = run_one_session_over_http(f"http://127.0.0.1:{ports['api']}", key)
            # the worker ran it to an end; the simulated fleet fails some sessions by design
            assert session["status"] in ("succeeded", "failed"), session
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()
        output = log_path.read_text()
    assert set(answered) == set(HEALTH), (
        f"not answering: {set(HEALTH) - set(answered)}\n{output[-3000:]}"
    )
    for name, port in ports.items():
        assert f"127.0.0.1:{port}" in output, f"{name}'s address is not printed"
    assert "polling sqlite store" in output  # the worker ran beside the UIs
    assert "ran 1 sessions" in output
    time.sleep(1)
    for port in ports.values():
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still served after stop"
