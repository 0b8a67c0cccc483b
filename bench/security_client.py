"""bench.security's harness: send a request, score its response, set up tenant alpha."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from nofx.api.liveserver import LiveServer, Tenant

CANARY_ENV = "NOFX_BENCH_CANARY_SECRET"
SLOW_S = 2.0


def shed(response: httpx.Response) -> bool:
    """A deliberate 503: analysis past its budget or the store briefly busy, as documented
    problem+json with Retry-After. Counted apart from server errors (which are failures)."""
    return (
        response.status_code == 503
        and response.headers.get("content-type", "").startswith("application/problem+json")
        and "retry-after" in response.headers
    )


@dataclass
class Tally:
    requests: int = 0
    server_errors: int = 0
    shed_503: int = 0
    slow_responses: int = 0
    cross_tenant_reads: int = 0
    secrets_leaked: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    by_phase: dict[str, Counter[int]] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class CampaignClient:
    """The harness: one keep-alive client per thread, every response scored into the tally,
    and alpha's resources that beta then tries to reach."""

    def __init__(
        self,
        server: LiveServer,
        tenants: dict[str, Tenant],
        secret: str,
        canary: Path,
        seed: int,
        size: dict[str, int],
    ) -> None:
        self.server = server
        self.alpha, self.beta = tenants["alpha"], tenants["beta"]
        self.secret = secret
        self.canary = canary
        self.rng = random.Random(seed)
        self.size = size
        self.tally = Tally()
        self.local = threading.local()
        self.alpha_ids: set[str] = set()
        self.spec: dict[str, Any] = {}

    # one HTTP client per thread (keep-alive), a separate source address for brute force
    def client(self, source: str = "127.0.0.1") -> httpx.Client:
        clients = self.local.__dict__.setdefault("clients", {})
        if source not in clients:
            transport = httpx.HTTPTransport(local_address=source)
            clients[source] = httpx.Client(
                base_url=self.server.url, timeout=30, transport=transport
            )
        client: httpx.Client = clients[source]
        return client

    def send(
        self,
        phase: str,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        expect: set[int] | None = None,
        source: str = "127.0.0.1",
        as_tenant: str | None = None,
        **kwargs: Any,
    ) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response = self.client(source).request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            with self.tally.lock:
                self.tally.requests += 1
                self.tally.server_errors += 1
                self.tally.examples.append(f"{phase}: {method} {path}: {type(exc).__name__}")
            return None
        elapsed = time.perf_counter() - started
        text = response.text
        leaked = self.secret in text or any(self.secret in v for v in response.headers.values())
        crossed = (
            as_tenant == "beta"
            and response.status_code < 300
            and any(i in text for i in self.alpha_ids)
        )
        with self.tally.lock:
            t = self.tally
            t.requests += 1
            t.statuses[response.status_code] += 1
            t.shed_503 += shed(response)
            t.by_phase.setdefault(phase, Counter())[response.status_code] += 1
            if response.status_code >= 500 and not shed(response):
                t.server_errors += 1
                t.examples.append(
                    f"{phase}: {method} {path} -> {response.status_code} {text[:200]}"
                )
            if elapsed > SLOW_S:
                t.slow_responses += 1
                t.examples.append(f"{phase}: {method} {path} took {elapsed:.2f} s")
            if leaked:
                t.secrets_leaked += 1
                t.examples.append(f"{phase}: {method} {path} leaked the canary secret")
            if crossed:
                t.cross_tenant_reads += 1
                t.examples.append(f"{phase}: beta read alpha's data at {method} {path}")
            if expect is not None and response.status_code not in expect:
                t.unexpected.append(
                    f"{phase}: {method} {path} -> {response.status_code}, expected {sorted(expect)}"
                )
        return response

    # --- setup: alpha's resources, which beta then tries to reach ---

    def setup(self) -> None:
        a = self.alpha
        agent = {
            "name": "alpha-coder",
            "capabilities": [{"name": "code.generate", "proficiency": 4}],
            "labels": {"owner": "alpha"},
        }
        created = self.send("setup", "POST", "/api/v1/agents", json=agent, headers=a.auth("write"))
        assert created is not None and created.status_code == 201, created and created.text
        agent_id = created.json()["agent_id"]
        self.alpha_agent = agent_id
        self.send(
            "setup",
            "PUT",
            f"/api/v1/orchestration/pools/{agent_id}",
            json={},
            headers=a.auth("write"),
        )
        session = self.send(
            "setup",
            "POST",
            "/api/v1/orchestration/sessions",
            json={"task": {"prompt": "alpha-private-prompt", "capability": "code.generate"}},
            headers=a.auth("write"),
        )
        assert session is not None
        self.alpha_session = session.json()["session_id"]
        message = {
            "message_id": "msg-alpha-private",
            "sender": "alpha",
            "topic": "alpha-room",
            "body": {"note": "alpha-private-note"},
        }
        self.send(
            "setup",
            "POST",
            "/api/v1/orchestration/communicate",
            json=message,
            headers=a.auth("write"),
        )
        keys = self.send("setup", "GET", "/api/v1/keys", headers=a.auth("admin"))
        assert keys is not None
        self.alpha_key_ids = [k["key_id"] for k in keys.json()]
        self.alpha_ids = {
            agent_id,
            self.alpha_session,
            "alpha-private-prompt",
            "alpha-private-note",
            *self.alpha_key_ids,
        }
        spec = self.send("setup", "GET", "/openapi.json")
        assert spec is not None
        self.spec = spec.json()
