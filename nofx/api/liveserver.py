"""The real API server in a subprocess on loopback: what the security tests and bench.security
attack (uvicorn, a free port, its own NOFX_HOME), and tenants with keys of every scope."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

from nofx.security import ApiKeyService, Scope
from nofx.store import EventStore


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Tenant:
    """A tenant's keys (plaintext) by scope name: read, write, admin."""

    tenant_id: str
    keys: dict[str, str]

    def auth(self, scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[scope]}"}


def create_tenants(
    database_url: str, names: tuple[str, ...] = ("alpha", "beta"), *, rate_per_s: float = 50.0
) -> dict[str, Tenant]:
    """Keys of every scope for each tenant, written straight to the store (as `nofx keys
    create` does), before the server starts."""
    store = EventStore(database_url)
    try:
        service = ApiKeyService(store)
        tenants = {}
        for name in names:
            keys = {
                scope.value: service.create(
                    name, f"{name}-{scope.value}", {scope}, rate_per_s=rate_per_s, burst=rate_per_s
                ).plaintext
                for scope in (Scope.READ, Scope.WRITE, Scope.ADMIN)
            }
            tenants[name] = Tenant(name, keys)
        return tenants
    finally:
        store.dispose()


@dataclass
class LiveServer:
    """``with LiveServer(home) as server:`` runs uvicorn until the block ends (SIGTERM)."""

    home: Path
    env: dict[str, str] = field(default_factory=dict)
    workers: int = 1
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    stop_seconds: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        return self.env.get("NOFX_DATABASE_URL") or f"sqlite:///{self.home / 'nofx.db'}"

    def start(self, timeout_s: float = 60.0) -> LiveServer:
        self.home.mkdir(parents=True, exist_ok=True)
        EventStore(self.database_url).dispose()  # migrated once, before any worker races to
        env = {
            **os.environ,
            "NOFX_HOME": str(self.home),
            "NOFX_API_AUTH": "keys",
            "NOFX_DATABASE_URL": self.database_url,
            **self.env,
        }
        command = [sys.executable, "-m", "uvicorn", "nofx.api.app:create_app", "--factory"]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--workers", str(self.workers), "--log-level", "warning", "--no-access-log"]
        command += ["--timeout-graceful-shutdown", "5"]  # as `nofx up` runs it
        log = (self.home / "server.log").open("wb")
        self.process = subprocess.Popen(
            command, env=env, stdout=log, stderr=log, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if httpx.get(self.url + "/api/v1/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the API did not start: {self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        path = self.home / "server.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self, timeout_s: float = 30.0) -> float:
        """SIGTERM, and the seconds the server took to exit (killed after ``timeout_s``)."""
        if self.process is None or self.process.poll() is not None:
            return 0.0
        started = time.monotonic()
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.stop_seconds = time.monotonic() - started
        return self.stop_seconds

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
