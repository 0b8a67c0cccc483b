"""Issue 10 against the real server (uvicorn on loopback, real keys): what only a real server
shows: chunked uploads, the event loop staying free while analysis and big lists run, the
SSE cap, and SIGTERM stopping the server while analysis is in flight."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from nofx.api.liveserver import LiveServer, Tenant, create_tenants
from tests.security.test_api_abuse import dense


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LiveServer, dict[str, Tenant]]]:
    home = tmp_path_factory.mktemp("live")
    server = LiveServer(home, env={"NOFX_API_SSE_STREAMS_PER_KEY": "1"})
    tenants = create_tenants(server.database_url, rate_per_s=5000)
    with server:
        yield server, tenants


def health_latencies(base: str, stop: threading.Event, out: list[float]) -> None:
    with httpx.Client(base_url=base, timeout=10) as client:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                client.get("/api/v1/health")
            except httpx.HTTPError:
                return  # the server is gone: the test that owns it reports why
            out.append((time.perf_counter() - started) * 1000)
            time.sleep(0.01)


def p95(values: list[float]) -> float:
    return sorted(values)[int(0.95 * (len(values) - 1))]


def test_a_chunked_upload_over_the_limit_is_413(live: tuple[LiveServer, dict[str, Tenant]]) -> None:
    server, tenants = live

    def chunks() -> Iterator[bytes]:
        yield b'{"name": "x", "capabilities": [{"name": "a"}], "labels": {"pad": "'
        for _ in range(80):  # 80 x 64 KiB = 5 MiB, with no Content-Length
            yield b"y" * 65536
        yield b'"}}'

    headers = {**tenants["alpha"].auth("write"), "content-type": "application/json"}
    response = httpx.post(
        server.url + "/api/v1/agents", content=chunks(), headers=headers, timeout=30
    )
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/problem+json")
    listed = httpx.get(server.url + "/api/v1/agents", headers=tenants["alpha"].auth("read"))
    assert listed.json()["items"] == []


def test_expensive_suggestions_do_not_starve_other_requests(
    live: tuple[LiveServer, dict[str, Tenant]],
) -> None:
    server, tenants = live
    baseline: list[float] = []
    stop = threading.Event()
    probe = threading.Thread(target=health_latencies, args=(server.url, stop, baseline))
    probe.start()
    time.sleep(1.0)
    stop.set()
    probe.join()

    under_load: list[float] = []
    answers: list[tuple[int, float]] = []

    def attack() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for _ in range(2):
                started = time.perf_counter()
                r = client.post(
                    "/api/v1/workflows/suggest",
                    json=dense(200, 20),
                    params={"check_capabilities": "false"},
                    headers=tenants["alpha"].auth("read"),
                )
                answers.append((r.status_code, time.perf_counter() - started))

    stop = threading.Event()
    probe = threading.Thread(target=health_latencies, args=(server.url, stop, under_load))
    attackers = [threading.Thread(target=attack) for _ in range(4)]
    probe.start()
    for t in attackers:
        t.start()
    for t in attackers:
        t.join()
    stop.set()
    probe.join()
    assert {code for code, _ in answers} <= {200, 503}
    assert max(seconds for _, seconds in answers) < 2.5, (
        answers
    )  # the 1 s budget (+ queueing), not minutes
    assert 503 in {code for code, _ in answers}  # this DAG is past the 1 s budget
    # the loop stayed free: /health is as fast as it was (on a shared, noisy 2-core machine)
    assert p95(under_load) < max(100.0, 5 * p95(baseline)), (
        statistics.median(baseline),
        p95(under_load),
    )


def test_listing_wide_agents_does_not_block_the_loop(
    live: tuple[LiveServer, dict[str, Tenant]],
) -> None:
    server, tenants = live
    beta = tenants["beta"]
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for i in range(30):
            spec = {
                "name": f"wide{i}",
                "capabilities": [{"name": f"skill.n{j}"} for j in range(256)],
            }
            assert (
                client.post("/api/v1/agents", json=spec, headers=beta.auth("write")).status_code
                == 201
            )
    idle: list[float] = []
    stop = threading.Event()
    probe = threading.Thread(target=health_latencies, args=(server.url, stop, idle))
    probe.start()
    time.sleep(1.0)
    stop.set()
    probe.join()
    latencies: list[float] = []
    stop = threading.Event()
    probe = threading.Thread(target=health_latencies, args=(server.url, stop, latencies))
    probe.start()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(5):
            names, cursor, pages = [], None, 0
            while True:
                params: dict[str, Any] = {"limit": 500, **({"cursor": cursor} if cursor else {})}
                listed = client.get("/api/v1/agents", params=params, headers=beta.auth("read"))
                assert listed.status_code == 200
                page = listed.json()
                names += [a["name"] for a in page["items"]]
                pages += 1
                if not (cursor := page["next_cursor"]):
                    break
            assert len(names) == 30 and pages == 2  # 4096 capabilities a page at most
    stop.set()
    probe.join()
    # before: every listing blocked the loop for seconds. Now listings run in the thread
    # pool and /health waits at most for GIL hand-offs (the machine is shared: a ratio to
    # the idle p95 measured just before, with a floor)
    assert p95(latencies) < max(300.0, 10 * p95(idle)), (p95(idle), p95(latencies))


def test_event_streams_per_key_are_capped(live: tuple[LiveServer, dict[str, Tenant]]) -> None:
    server, tenants = live
    alpha = tenants["alpha"]
    with httpx.Client(base_url=server.url, timeout=30) as client:
        spec = {"name": "sse", "capabilities": [{"name": "code.generate"}]}
        client.post("/api/v1/agents", json=spec, headers=alpha.auth("write"))
        session = client.post(
            "/api/v1/orchestration/sessions",
            json={"task": {"prompt": "wait", "capability": "code.generate"}},
            headers=alpha.auth("write"),
        ).json()["session_id"]
        path = f"/api/v1/orchestration/sessions/{session}/events"
        sse = {**alpha.auth("read"), "accept": "text/event-stream"}
        with client.stream("GET", path, params={"timeout_s": 3}, headers=sse) as first:
            assert first.status_code == 200
            second = httpx.get(server.url + path, params={"timeout_s": 1}, headers=sse)
            assert second.status_code == 429 and second.headers["retry-after"]
            other_key = {**alpha.auth("admin"), "accept": "text/event-stream"}
            with httpx.stream(
                "GET", server.url + path, params={"timeout_s": 0.5}, headers=other_key
            ) as third:
                assert third.status_code == 200
            text = first.read().decode()
        assert "event: timeout" in text
        again = httpx.get(server.url + path, params={"timeout_s": 0.5}, headers=sse, timeout=10)
        assert again.status_code == 200  # the slot was given back when the stream ended


@pytest.mark.parametrize("budget_s", ["1", "60"])
def test_sigterm_stops_the_server_while_analysis_runs(tmp_path: Path, budget_s: str) -> None:
    """With the default budget the analyses end (503) within it; with an operator's long
    budget, the graceful-shutdown timeout (5 s, as `nofx up` runs uvicorn) still stops it."""
    server = LiveServer(tmp_path / "home", env={"NOFX_API_ANALYSIS_BUDGET_S": budget_s})
    tenants = create_tenants(server.database_url)
    server.start()
    results: list[Any] = []

    def attack() -> None:
        try:
            r = httpx.post(
                server.url + "/api/v1/workflows/suggest",
                json=dense(300, 15),
                params={"check_capabilities": "false"},
                headers=tenants["alpha"].auth("read"),
                timeout=60,
            )
            results.append(r.status_code)
        except httpx.HTTPError as exc:
            results.append(type(exc).__name__)

    attackers = [threading.Thread(target=attack) for _ in range(3)]
    for t in attackers:
        t.start()
    time.sleep(1.0)  # the analyses are running
    seconds = server.stop()
    for t in attackers:
        t.join(timeout=10)
    assert seconds < (3.0 if budget_s == "1" else 8.0), (seconds, server.log_tail())
    assert server.process is not None and server.process.poll() is not None
