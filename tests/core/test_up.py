"""`nofx up` serves the API, Dagster, Streamlit and MLflow, each answering on its port, and stops them all."""

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


def test_up_serves_all_four_uis_then_stops_them(nofx_home: Path) -> None:
    ports = {name: free_port() for name in HEALTH}
    env = {**os.environ, **{f"NOFX_{n.upper()}_PORT": str(p) for n, p in ports.items()}}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nofx.cli", "up"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    answered: dict[str, int] = {}
    try:
        deadline = time.monotonic() + 120
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
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=60)[0]
    assert set(answered) == set(HEALTH), (
        f"not answering: {set(HEALTH) - set(answered)}\n{output[-3000:]}"
    )
    for name, port in ports.items():
        assert f"127.0.0.1:{port}" in output, f"{name}'s address is not printed"
    time.sleep(1)
    for port in ports.values():
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still served after stop"
