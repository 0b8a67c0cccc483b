"""bench.security's attack generators: the targeted attacks of issue 10, seeded random requests."""

from __future__ import annotations

import base64
import json
import random
import secrets
from collections.abc import Iterator
from typing import Any

from bench.security_client import CANARY_ENV, CampaignClient


class Campaign(CampaignClient):
    """Every attack of issue 10 and seeded random requests from the OpenAPI spec."""

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
