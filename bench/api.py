"""HTTP API under open-loop load from a second process, against a real uvicorn server.

Requests are sent on a fixed schedule (request i at t0 + i/rate) whatever the
server does, and latency is measured from the scheduled time, so queueing shows
instead of being hidden (no coordinated omission). ``client_late_p95_ms`` says how late
the client itself woke up to send (a starved client, e.g. on a shared machine, shows
there, and its lateness is inside the latencies). The server runs in its own
process with realistic data loaded (a simulated fleet and finished sessions).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench.report import parse_args, percentile, show, write

IN_FLIGHT = "1000000"
SUMMARY_KEYS = (
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "client_late_p95_ms",
    "server_cpu_ms_per_request",
    "errors",
    "answers",
    "rate",
    "requests",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_cpu_s(pid: int | None) -> float | None:
    """CPU seconds of a process and its children (the uvicorn workers), from /proc: the cost
    per request, which a machine shared with other work does not inflate as it does latency.
    None where /proc is missing."""
    if pid is None:
        return None
    try:
        total, pending = 0, [pid]
        while pending:
            p = pending.pop()
            stat = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(stat[11]) + int(stat[12])
            for task in Path(f"/proc/{p}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        return total / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def load_data(home: Path, sessions: int) -> dict[str, Any]:
    """A simulated fleet and finished sessions, written through the real runtime."""
    os.environ["NOFX_HOME"] = str(home)
    from nofx.fleet import demo_fleet, demo_requests
    from nofx.registry import AgentRegistry
    from nofx.runtime import Runtime, RuntimeConfig
    from nofx.settings import Settings
    from nofx.store import EventStore

    settings = Settings.from_env()
    settings.ensure_dirs()
    store = EventStore(settings.database_url)
    registry = AgentRegistry(store)
    agents = [registry.register(spec) for spec in demo_fleet()]
    runtime = Runtime(store, registry, config=RuntimeConfig(time_scale=0.0))
    ids = [runtime.sessions.submit(r).session_id for r in demo_requests(sessions)]
    asyncio.run(runtime.run_pending())
    keys: dict[str, str] = {}
    try:
        from nofx.security import ApiKeyService, Scope

        service = ApiKeyService(store)
        keys["main"] = service.create(
            "default", "bench", {Scope.WRITE}, rate_per_s=1e6, burst=1e6
        ).plaintext
        keys["limited"] = service.create(
            "default", "limited", {Scope.READ}, rate_per_s=10, burst=10
        ).plaintext
    except Exception:  # security not available: the API is open
        pass
    store.dispose()
    return {"agent_ids": [a.agent_id for a in agents], "session_ids": ids, "keys": keys}


def start_server(home: Path, port: int, workers: int = 1) -> subprocess.Popen:
    # nobody runs the submitted sessions here, so the tenant's in-flight ceiling (500 by
    # default) would answer 429 after the first second: the write phase measures the write
    # path, with the ceiling above what it submits (the ceiling has its own tests)
    env = {**os.environ, "NOFX_HOME": str(home), "NOFX_API_MAX_SESSIONS_IN_FLIGHT": IN_FLIGHT}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "nofx.api.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        # a file, not a pipe nobody drains: a server that logs 64 KB of errors would block
        # on the full pipe and hang every request
        stderr=(home / "server.log").open("wb"),
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1).status_code < 500:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"API did not start: {(home / 'server.log').read_text()[-2000:]}")


class Connection:
    """A minimal HTTP/1.1 keep-alive client: the load generator must cost far less CPU than the
    server it measures (httpx at 500 requests/s takes a whole core of this 2-core machine)."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.extra}"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        await self.writer.drain()
        assert self.reader is not None
        status_line = await self.reader.readline()
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        if length:
            await self.reader.readexactly(length)
        return int(status_line.split()[1])


async def open_loop(
    base: str,
    rate: float,
    seconds: float,
    kind: str,
    data: dict[str, Any],
    connections: int = 50,
    server_pid: int | None = None,
) -> dict[str, Any]:
    rng = random.Random(1)
    host, port = base.removeprefix("http://").split(":")
    headers = (
        {"Authorization": f"Bearer {data['keys']['main']}"} if data["keys"].get("main") else {}
    )
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(Connection(host, int(port), headers))
    latencies: list[float] = []
    late: list[float] = []  # how late the client itself woke up to send: its own starvation
    errors = 0
    codes: Counter[str] = Counter()
    n = int(rate * seconds)
    start = time.perf_counter() + 0.2

    async def one(i: int) -> None:
        nonlocal errors
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        late.append((time.perf_counter() - due) * 1000)
        conn = await pool.get()  # waiting for a free connection counts: it is queueing
        try:
            if kind == "read":
                choice = i % 4
                if choice == 0:
                    code = await conn.request("GET", "/api/v1/agents?limit=20")
                elif choice == 1:
                    code = await conn.request(
                        "GET", f"/api/v1/orchestration/sessions/{rng.choice(data['session_ids'])}"
                    )
                elif choice == 2:
                    code = await conn.request("GET", "/api/v1/orchestration/sessions?limit=20")
                else:
                    code = await conn.request(
                        "GET", f"/api/v1/agents/{rng.choice(data['agent_ids'])}"
                    )
            else:
                body = json.dumps(
                    {
                        "task": {
                            "prompt": f"load {i}",
                            "capability": "code.generate",
                            "complexity": 0.3,
                        }
                    }
                )
                code = await conn.request("POST", "/api/v1/orchestration/sessions", body.encode())
            codes[str(code)] += 1
            if code >= 400:
                errors += 1
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
            codes[type(exc).__name__] += 1
            errors += 1
            conn = Connection(conn.host, conn.port, headers)
        finally:
            pool.put_nowait(conn)
        latencies.append((time.perf_counter() - due) * 1000)

    cpu_before = process_cpu_s(server_pid)
    await asyncio.gather(*(one(i) for i in range(n)))
    cpu_after = process_cpu_s(server_pid)
    cpu_ms = (
        (cpu_after - cpu_before) * 1000 / n
        if cpu_before is not None and cpu_after is not None
        else None
    )
    return {
        "kind": kind,
        "rate": rate,
        "requests": n,
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        "client_late_p95_ms": percentile(late, 95),
        "server_cpu_ms_per_request": cpu_ms,
        "errors": errors,
        "answers": dict(codes),
    }


async def rate_limit_probe(base: str, key: str, requests: int = 100) -> dict[str, Any]:
    """A key limited to 10/s with a burst of 10: send a burst and count who gets 429."""
    codes = []
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10
    ) as client:
        start = time.perf_counter()
        for _ in range(requests):
            r = await client.get("/api/v1/agents", params={"limit": 1})
            codes.append((r.status_code, r.headers.get("retry-after")))
        elapsed = time.perf_counter() - start
    allowed_budget = int(10 + 10 * elapsed)
    over = max(0, requests - allowed_budget)
    refused = sum(1 for code, _ in codes if code == 429)
    retry_after_ok = all(ra is not None and int(ra) >= 1 for code, ra in codes if code == 429)
    return {
        "requests": requests,
        "over_limit": over,
        "answered_429": refused,
        "rate_limit_correct": (min(refused, over) / over) if over else 1.0,
        "retry_after_present": retry_after_ok,
    }


def client_process(
    base: str,
    plan: list[tuple[str, float, float]],
    data: dict[str, Any],
    out: Any,
    server_pid: int | None = None,
) -> None:
    results = [
        asyncio.run(open_loop(base, rate, seconds, kind, data, server_pid=server_pid))
        for kind, rate, seconds in plan
    ]
    probe = (
        asyncio.run(rate_limit_probe(base, data["keys"]["limited"]))
        if data["keys"].get("limited")
        else None
    )
    out.put((results, probe))


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    seconds = 3.0 if args.quick else 10.0
    home = Path(tempfile.mkdtemp(prefix="nofx-bench-api-"))
    data = load_data(home, 200 if args.quick else 2000)
    port = free_port()
    server = start_server(home, port, workers=int(os.environ.get("NOFX_BENCH_API_WORKERS", "2")))
    base = f"http://127.0.0.1:{port}"
    ladder = [250, 500, 1000] if args.quick else [200, 250, 300, 350, 400, 500, 750, 1000]
    plan = [("read", 500.0, seconds), ("write", 500.0, seconds)] + [
        ("read", float(r), seconds / 2) for r in ladder
    ]
    queue: Any = mp.get_context("spawn").Queue()
    client = mp.get_context("spawn").Process(
        target=client_process, args=(base, plan, data, queue, server.pid)
    )
    try:
        client.start()
        results, probe = queue.get(timeout=900)
        client.join()
    finally:
        server.terminate()
        server.wait(timeout=30)
    show("API under open-loop load (latency from the scheduled send time)", results)
    reads, writes = results[0], results[1]
    held = [r["rate"] for r in results[2:] if r["p95_ms"] < 200 and r["errors"] == 0]
    summary = {
        "read": {k: reads[k] for k in SUMMARY_KEYS},
        "write": {k: writes[k] for k in SUMMARY_KEYS},
        "read_p95_target_ms": 20.0,
        "read_p95_ratio_to_target": reads["p95_ms"] / 20.0,
        "max_rps_p95_under_200ms": max(held) if held else 0.0,
        "rate_limit_correct": probe["rate_limit_correct"] if probe else None,
        "rate_limit_probe": probe,
        "connections": 50,
        "max_sessions_in_flight": int(IN_FLIGHT),
        "ladder": results[2:],
    }
    if probe:
        show("rate limit probe", [probe])
    write(args.json, "api", args.quick, summary)


if __name__ == "__main__":
    main()
