"""bench.security's /health probe, in its own process so the attackers' GIL does not delay it."""

from __future__ import annotations

import multiprocessing
import socket
import time
from typing import Any


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
