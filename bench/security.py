"""A bounded fuzz and abuse campaign against the real API (issue 10), with /health watched.

    python -m bench.security [--quick] [--json PATH] [--seed N]

Starts uvicorn on loopback with its own NOFX_HOME, creates tenants alpha and beta with read,
write and admin keys, and runs every attack of issue 10 plus seeded random requests built
from the OpenAPI spec, from a pool of client threads, while a separate process measures
/health latency (its idle p95 is measured in the same run, before the attack). Afterwards a
worker runs every session that was accepted, so an agent that could run code would run now.

It reports requests, server_errors (5xx), slow_responses (> 2 s), cross_tenant_reads (beta
seeing any of alpha's ids or data), code_executions_via_api (a canary file that forbidden
providers try to create), secrets_leaked (a canary env var's value in any response, event or
log) and health_p95_ms. All must be 0 and health_p95_ms < 20.
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from nofx.api.liveserver import LiveServer, Tenant, create_tenants

CANARY_ENV = "NOFX_BENCH_CANARY_SECRET"
SLOW_S = 2.0
HEALTH_TARGET_MS = 20.0
QUICK = {"random": 250, "brute": 60, "dags": 6, "cursors": 1, "chunked": 3, "wide": 3}
FULL = {"random": 2500, "brute": 200, "dags": 30, "cursors": 3, "chunked": 10, "wide": 10}


# --- the /health probe, in its own process so the attackers' GIL does not delay it ---


def _health_once(sock: socket.socket, request: bytes) -> bool:
    """One keep-alive GET on a raw socket: the probe must cost less than what it measures."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        body += chunk
    return head.startswith(b"HTTP/1.1 200")


def _probe(port: int, stop: Any, out: Any, interval_s: float) -> None:
    samples: list[tuple[float, float]] = []
    request = b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    sock: socket.socket | None = None
    while not stop.is_set():
        started = time.perf_counter()
        try:
            if sock is None:
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            ok = _health_once(sock, request)
        except OSError:
            ok, sock = False, None
        elapsed = (time.perf_counter() - started) * 1000
        samples.append((time.time(), elapsed if ok else float("inf")))
        time.sleep(interval_s)
    out.put(samples)


class HealthProbe:
    def __init__(self, port: int, interval_s: float = 0.02) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._stop = ctx.Event()
        self._out: Any = ctx.Queue()
        self._process = ctx.Process(target=_probe, args=(port, self._stop, self._out, interval_s))

    def start(self) -> None:
        self._process.start()

    def stop(self) -> list[tuple[float, float]]:
        self._stop.set()
        samples: list[tuple[float, float]] = self._out.get(timeout=60)
        self._process.join(timeout=30)
        return samples


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


# --- the campaign ---


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


class Campaign:
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

    # --- the attacks ---

    def cross_tenant(self) -> None:
        b, a_agent, a_session = self.beta, self.alpha_agent, self.alpha_session
        probes: list[tuple[str, str, Any]] = [
            ("GET", f"/api/v1/agents/{a_agent}", None),
            ("PUT", f"/api/v1/agents/{a_agent}", {"name": "x", "capabilities": [{"name": "a.b"}]}),
            ("DELETE", f"/api/v1/agents/{a_agent}", None),
            ("GET", f"/api/v1/orchestration/sessions/{a_session}", None),
            ("GET", f"/api/v1/orchestration/sessions/{a_session}/events", None),
            ("POST", f"/api/v1/orchestration/sessions/{a_session}/cancel", None),
            ("GET", f"/api/v1/orchestration/pools/{a_agent}", None),
            ("GET", f"/api/v1/orchestration/pools/{a_agent}/decisions", None),
            ("PUT", f"/api/v1/orchestration/pools/{a_agent}", {}),
            ("GET", "/api/v1/orchestration/communicate/topic:alpha-room", None),
            ("GET", "/api/v1/agents", None),
            ("GET", "/api/v1/orchestration/sessions", None),
            ("GET", "/api/v1/orchestration/pools", None),
            ("GET", "/api/v1/keys", None),
            ("GET", "/api/v1/alerts", None),
            ("GET", "/api/v1/orchestration/breakers", None),
            *[("DELETE", f"/api/v1/keys/{k}", None) for k in self.alpha_key_ids],
        ]
        for method, path, body in probes:
            for scope in ("read", "write", "admin"):
                self.send(
                    "cross-tenant",
                    method,
                    path,
                    json=body,
                    headers=b.auth(scope),
                    as_tenant="beta",
                    expect={200, 403, 404, 422, 204} if method == "GET" else {403, 404, 422},
                )
        # beta reuses alpha's message id: its own message, not a 409 and not alpha's body
        reuse = {
            "message_id": "msg-alpha-private",
            "sender": "beta",
            "topic": "beta-room",
            "body": {},
        }
        self.send(
            "cross-tenant",
            "POST",
            "/api/v1/orchestration/communicate",
            json=reuse,
            headers=b.auth("write"),
            as_tenant="beta",
            expect={201},
        )

    def forbidden_providers(self) -> None:
        """Agents that would run code or send a secret out; none may be accepted to run."""
        touch = f"touch {self.canary}; echo ${CANARY_ENV}"
        specs = [
            {"kind": "command", "config": {"argv": ["sh", "-c", touch]}},
            {"kind": "command", "config": {"argv": ["/bin/sh", "-c", touch], "env": {"X": "1"}}},
            {
                "kind": "python",
                "config": {"callable": "os:system", "args": [f"touch {self.canary}"]},
            },
            {"kind": "python", "config": {"callable": "builtins:eval"}},
            {
                "kind": "openai",
                "config": {"base_url": "http://127.0.0.1:9/v1", "api_key_env": CANARY_ENV},
            },
            {
                "kind": "openai",
                "config": {"base_url": "http://169.254.169.254/latest", "api_key": self.secret},
            },
        ]
        for i, provider in enumerate(specs):
            spec = {
                "name": f"evil-{i}",
                "capabilities": [{"name": f"evil.c{i}"}],
                "provider": provider,
            }
            created = self.send(
                "code-execution",
                "POST",
                "/api/v1/agents",
                json=spec,
                headers=self.beta.auth("write"),
                expect={403, 422},
            )
            if created is not None and created.status_code == 201:  # accepted: make it run
                self.send(
                    "code-execution",
                    "POST",
                    "/api/v1/orchestration/sessions",
                    json={"task": {"prompt": "go", "capability": f"evil.c{i}"}},
                    headers=self.beta.auth("write"),
                )

    def deep_and_non_finite(self) -> None:
        deep: Any = {}
        for _ in range(300):
            deep = {"a": deep}
        w = self.alpha.auth("write")
        for path, body in [
            ("/api/v1/orchestration/communicate", {"sender": "a", "topic": "deep", "body": deep}),
            ("/api/v1/agents", {"name": "deep", "capabilities": [{"name": "a.b"}], "labels": deep}),
            ("/api/v1/workflows/suggest", deep),
        ]:
            self.send("deep-json", "POST", path, json=body, headers=w, expect={422})
        raw_deep = b"[" * 100_000 + b"]" * 100_000
        self.send(
            "deep-json",
            "POST",
            "/api/v1/agents",
            content=raw_deep,
            headers={**w, "content-type": "application/json"},
            expect={413, 422},
        )
        self.send(
            "deep-json",
            "GET",
            "/api/v1/orchestration/communicate/topic:deep",
            headers=self.alpha.auth("read"),
            expect={200},
        )
        for number in ("Infinity", "-Infinity", "NaN", "1e999"):
            task = '{"prompt": "x", "capability": "code.generate"}'
            body = f'{{"task": {task}, "budget_usd": {number}}}'
            self.send(
                "non-finite",
                "POST",
                "/api/v1/orchestration/sessions",
                content=body.encode(),
                headers={**w, "content-type": "application/json"},
                expect={422},
            )

    def chunked_bodies(self) -> None:
        def chunks(total_mb: int) -> Iterator[bytes]:
            yield b'{"name": "big", "capabilities": [{"name": "a.b"}], "labels": {"x": "'
            for _ in range(total_mb * 16):
                yield b"y" * 65536
            yield b'"}}'

        for i in range(self.size["chunked"]):
            self.send(
                "chunked",
                "POST",
                "/api/v1/agents",
                content=chunks(2 + i % 4),
                headers={**self.alpha.auth("write"), "content-type": "application/json"},
                expect={413},
            )

    def huge_dags(self) -> None:
        def chain(n: int) -> dict[str, Any]:
            return {
                "name": "chain",
                "steps": [
                    {
                        "id": f"s{i}",
                        "capability": "code.generate",
                        "needs": [f"s{i - 1}"] if i else [],
                    }
                    for i in range(n)
                ],
            }

        def dense(n: int, k: int) -> dict[str, Any]:
            return {
                "name": "dense",
                "steps": [
                    {
                        "id": f"s{i}",
                        "capability": "code.generate",
                        "needs": [f"s{j}" for j in range(max(0, i - k), i)],
                    }
                    for i in range(n)
                ],
            }

        shapes = [
            chain(1000),
            chain(500),
            dense(300, 16),
            dense(200, 20),
            dense(100, 50),
            chain(40),
        ]
        for i in range(self.size["dags"]):
            workflow = shapes[i % len(shapes)]
            path = "/api/v1/workflows/suggest" if i % 3 else "/api/v1/workflows/analyze"
            self.send(
                "huge-dag",
                "POST",
                path,
                json=workflow,
                params={"check_capabilities": "false"},
                headers=self.alpha.auth("read"),
                expect={200, 422, 503},
            )

    def bad_cursors(self) -> None:
        lists = [
            "/api/v1/agents",
            "/api/v1/orchestration/sessions",
            "/api/v1/alerts",
            "/api/v1/analytics/predictions",
            "/api/v1/analytics/insights",
            "/api/v1/analytics/recommendations",
            "/api/v1/analytics/forecasts/durations",
            "/api/v1/analytics/forecasts/usage",
        ]

        def b64(value: Any) -> str:
            return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()

        cursors = [
            b64({"after": "x"}),
            b64({"offset": 2**70, "rows": 1}),
            b64({"t": "nope", "id": 1}),
            b64([1, 2]),
            "%%%",
            "a.b",
            b64({"offset": 1}) + "." + "A" * 22,
        ]
        for _ in range(self.size["cursors"]):
            for path in lists:
                for cursor in cursors:
                    self.send(
                        "bad-cursor",
                        "GET",
                        path,
                        params={"cursor": cursor},
                        headers=self.alpha.auth("read"),
                        expect={422},
                    )

    def wide_agents(self) -> None:
        w, r = self.alpha.auth("write"), self.alpha.auth("read")
        self.send(
            "wide-agents",
            "POST",
            "/api/v1/agents",
            json={"name": "huge", "capabilities": [{"name": f"s.n{i}"} for i in range(10_000)]},
            headers=w,
            expect={422},
        )
        for i in range(self.size["wide"]):
            spec = {"name": f"wide-{i}", "capabilities": [{"name": f"s.n{j}"} for j in range(256)]}
            self.send("wide-agents", "POST", "/api/v1/agents", json=spec, headers=w, expect={201})
        for _ in range(self.size["wide"]):
            self.send(
                "wide-agents",
                "GET",
                "/api/v1/agents",
                params={"limit": 500},
                headers=r,
                expect={200},
            )

    def brute_force(self) -> None:
        """Guessed keys from another loopback address: 401 until throttled, then 429."""
        for _ in range(self.size["brute"]):
            guess = f"nofx_{secrets.token_hex(8)}_{secrets.token_urlsafe(24)}"
            self.send(
                "brute-force",
                "GET",
                "/api/v1/agents",
                headers={"Authorization": f"Bearer {guess}"},
                source="127.0.0.2",
                expect={401, 429},
            )
        # a stolen key id with guessed secrets, same address
        key_id = self.alpha_key_ids[0]
        for _ in range(10):
            self.send(
                "brute-force",
                "GET",
                "/api/v1/agents",
                headers={"Authorization": f"Bearer nofx_{key_id}_{secrets.token_urlsafe(24)}"},
                source="127.0.0.2",
                expect={401, 429},
            )
        # everyone else is unaffected
        self.send(
            "brute-force", "GET", "/api/v1/agents", headers=self.alpha.auth("read"), expect={200}
        )

    def misc(self) -> None:
        a = self.alpha
        self.send("misc", "PATCH", "/api/v1/agents", headers=a.auth("admin"), expect={405})
        self.send("misc", "GET", "/metrics", headers=a.auth("admin"), expect={403})
        self.send("misc", "GET", "/metrics", expect={401})
        self.send(
            "misc",
            "POST",
            "/api/v1/keys",
            json={"name": "m", "scopes": ["metrics"]},
            headers=a.auth("admin"),
            expect={403},
        )
        gone = self.send(
            "misc",
            "POST",
            "/api/v1/agents",
            json={"name": "pooled", "capabilities": [{"name": "code.generate"}]},
            headers=a.auth("write"),
        )
        if gone is not None and gone.status_code == 201:
            agent_id = gone.json()["agent_id"]
            self.send(
                "misc",
                "PUT",
                f"/api/v1/orchestration/pools/{agent_id}",
                json={},
                headers=a.auth("write"),
            )
            self.send("misc", "DELETE", f"/api/v1/agents/{agent_id}", headers=a.auth("write"))
            self.send(
                "misc", "GET", "/api/v1/orchestration/pools", headers=a.auth("read"), expect={200}
            )
        for i in range(60):  # key minting is limited
            self.send(
                "misc",
                "POST",
                "/api/v1/keys",
                json={"name": f"mint{i}", "scopes": ["read"]},
                headers=a.auth("admin"),
                expect={201, 409, 429},
            )

    # --- seeded random requests from the spec (schemathesis-style) ---

    def random_requests(self) -> None:
        operations = [
            (path, method.upper(), op)
            for path, ops in self.spec["paths"].items()
            for method, op in ops.items()
        ]
        rng = random.Random(self.rng.random())
        for _ in range(self.size["random"]):
            path, method, op = rng.choice(operations)
            tenant = rng.choice([self.alpha, self.beta])
            scope = rng.choice(["read", "write", "admin"])
            concrete = path
            for param in [p for p in op.get("parameters", []) if p["in"] == "path"]:
                value = rng.choice(
                    [
                        self.alpha_agent,
                        self.alpha_session,
                        "x" * rng.randint(1, 300),
                        "../../etc",
                        "%00",
                        "agt_1",
                    ]
                )
                concrete = concrete.replace("{" + param["name"] + "}", value)
            params = {
                p["name"]: self.random_value(rng)
                for p in op.get("parameters", [])
                if p["in"] == "query" and rng.random() < 0.6
            }
            body = None
            if "requestBody" in op:
                body = self.random_body(rng, op)
            self.send(
                "random",
                method,
                concrete,
                params=params,
                json=body,
                headers=tenant.auth(scope),
                as_tenant=tenant.tenant_id,
            )

    def random_value(self, rng: random.Random) -> Any:
        return rng.choice(
            [
                -1,
                0,
                1,
                2**63,
                10**30,
                "inf",
                "NaN",
                "-0",
                "x" * rng.randint(0, 2000),
                "true",
                "code.generate",
                "'; drop table agents; --",
                "\u0000",
            ]
        )

    def random_body(self, rng: random.Random, op: dict[str, Any]) -> Any:
        content = op["requestBody"].get("content", {}).get("application/json", {})
        examples = list((content.get("examples") or {}).values())
        if examples and rng.random() < 0.5:
            body = json.loads(json.dumps(examples[0]["value"]))
            if isinstance(body, dict) and body and rng.random() < 0.7:
                key = rng.choice(list(body))
                body[key] = (
                    self.random_value(rng) if rng.random() < 0.5 else self.random_json(rng, 4)
                )
            return body
        return self.random_json(rng, rng.randint(0, 6))

    def random_json(self, rng: random.Random, depth: int) -> Any:
        if depth <= 0:
            return self.random_value(rng)
        kind = rng.random()
        if kind < 0.4:
            return {f"k{i}": self.random_json(rng, depth - 1) for i in range(rng.randint(0, 4))}
        if kind < 0.7:
            return [self.random_json(rng, depth - 1) for _ in range(rng.randint(0, 4))]
        return self.random_value(rng)


def run_worker(server: LiveServer, env: dict[str, str]) -> dict[str, Any]:
    """Run every accepted session once (as `nofx run` does), with the canary in the env."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "nofx.cli", "run", "--time-scale", "0"],
        env={
            **os.environ,
            **env,
            "NOFX_HOME": str(server.home),
            "NOFX_DATABASE_URL": server.database_url,
        },
        capture_output=True,
        text=True,
        timeout=600,
    )
    return {
        "exit_code": done.returncode,
        "seconds": round(time.perf_counter() - started, 2),
        "output": (done.stdout + done.stderr)[-4000:],
    }


def secret_in_store(database_url: str, secret: str) -> int:
    from nofx.store import EventStore

    store = EventStore(database_url)
    try:
        found, after = 0, 0
        while True:
            page = store.read_all(after_position=after, limit=5000)
            found += sum(secret in json.dumps(e.payload, default=str) for e in page)
            if len(page) < 5000:
                return found
            after = page[-1].position
    finally:
        store.dispose()


def campaign(size: dict[str, int], seed: int, threads: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="nofx-bench-security-") as tmp:
        root = Path(tmp)
        secret = "canary-" + secrets.token_hex(16)
        canary = root / "code-executed.canary"
        env = {
            CANARY_ENV: secret,
            "NOFX_API_TENANT_RATE_PER_S": "5000",
            "NOFX_API_TENANT_BURST": "5000",
        }
        server = LiveServer(root / "home", env=env)
        tenants = create_tenants(server.database_url, rate_per_s=5000)
        server.start()
        probe = HealthProbe(server.port)
        probe.start()
        time.sleep(3.0)  # the probe's first samples: the idle baseline
        attack_started = time.time()
        attack = Campaign(server, tenants, secret, canary, seed, size)
        try:
            attack.setup()
            phases: list[Callable[[], None]] = [
                attack.cross_tenant,
                attack.forbidden_providers,
                attack.deep_and_non_finite,
                attack.chunked_bodies,
                attack.huge_dags,
                attack.bad_cursors,
                attack.wide_agents,
                attack.misc,
                attack.brute_force,
            ]
            # the random requests run on every thread alongside the targeted phases
            per_thread = max(1, size["random"] // threads)
            randoms = []
            for i in range(threads):
                part = Campaign(
                    server, tenants, secret, canary, seed * 100 + i, {**size, "random": per_thread}
                )
                part.alpha_ids, part.spec, part.tally = attack.alpha_ids, attack.spec, attack.tally
                part.alpha_agent, part.alpha_session = attack.alpha_agent, attack.alpha_session
                randoms.append(part.random_requests)
            with ThreadPoolExecutor(threads) as pool:
                for future in [pool.submit(f) for f in phases + randoms]:
                    future.result()
            attack_ended = time.time()
        finally:
            samples = probe.stop()
            server_seconds_to_stop = server.stop()
        worker = run_worker(server, {CANARY_ENV: secret})
        stored_leaks = secret_in_store(server.database_url, secret)
        log = server.log_tail(10**7) + worker["output"]
        t = attack.tally
        idle = [ms for at, ms in samples if at < attack_started]
        under = [ms for at, ms in samples if attack_started <= at <= attack_ended]
        return {
            "seed": seed,
            "threads": threads,
            "size": size,
            "requests": t.requests,
            "server_errors": t.server_errors,
            "shed_503_with_retry_after": t.shed_503,
            "slow_responses": t.slow_responses,
            "cross_tenant_reads": t.cross_tenant_reads,
            "code_executions_via_api": int(canary.exists()),
            "secrets_leaked": t.secrets_leaked + stored_leaks + int(secret in log),
            "health_p95_ms": percentile(under, 0.95),
            "health_p50_ms": percentile(under, 0.50),
            "health_max_ms": percentile(under, 1.0),
            "health_samples": len(under),
            "health_idle_p95_ms": percentile(idle, 0.95),
            "health_idle_samples": len(idle),
            "attack_seconds": round(attack_ended - attack_started, 2),
            "server_seconds_to_stop_on_sigterm": round(server_seconds_to_stop, 2),
            "statuses": {str(k): v for k, v in sorted(t.statuses.items())},
            "by_phase": {
                p: {str(k): v for k, v in sorted(c.items())} for p, c in t.by_phase.items()
            },
            "unexpected_statuses": t.unexpected[:50],
            "unexpected_count": len(t.unexpected),
            "problems": t.examples[:50],
            "worker": {k: v for k, v in worker.items() if k != "output"},
        }


def verdict(result: dict[str, Any]) -> list[str]:
    failed = [
        name
        for name in (
            "server_errors",
            "slow_responses",
            "cross_tenant_reads",
            "code_executions_via_api",
            "secrets_leaked",
        )
        if result[name] != 0
    ]
    if result["health_p95_ms"] is None or result["health_p95_ms"] >= HEALTH_TARGET_MS:
        failed.append("health_p95_ms")
    return failed


def print_table(result: dict[str, Any]) -> None:
    rows = [
        ("requests", result["requests"], "-"),
        ("server_errors", result["server_errors"], "0"),
        ("slow_responses (> 2 s)", result["slow_responses"], "0"),
        ("cross_tenant_reads", result["cross_tenant_reads"], "0"),
        ("code_executions_via_api", result["code_executions_via_api"], "0"),
        ("secrets_leaked", result["secrets_leaked"], "0"),
        ("health_p95_ms under abuse", result["health_p95_ms"], f"< {HEALTH_TARGET_MS:g}"),
        ("health_p95_ms idle (same run)", result["health_idle_p95_ms"], "-"),
        ("unexpected statuses", result["unexpected_count"], "-"),
        ("SIGTERM to exit (s)", result["server_seconds_to_stop_on_sigterm"], "-"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'metric':<{width}}  {'value':>10}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value!s:>10}  {target}")
    for phase, statuses in result["by_phase"].items():
        print(f"  {phase:<16} {statuses}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smaller campaign, under a minute")
    parser.add_argument("--json", type=Path, help="write the result here")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)
    size = QUICK if args.quick else FULL
    result = campaign(size, args.seed, args.threads)
    result["mode"] = "quick" if args.quick else "full"
    result["failed"] = verdict(result)
    print_table(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print("all targets met" if not result["failed"] else f"NOT met: {', '.join(result['failed'])}")
    return 0 if not result["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
