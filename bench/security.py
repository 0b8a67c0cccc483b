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
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.security_attacks import Campaign
from bench.security_client import CANARY_ENV, SLOW_S, CampaignClient, Tally, shed
from bench.security_health import HealthProbe, percentile
from nofx.api.liveserver import LiveServer, create_tenants

# the parts live in bench/security_{health,client,attacks}.py; their names stay here
__all__ = [
    "CANARY_ENV",
    "FULL",
    "HEALTH_TARGET_MS",
    "QUICK",
    "SLOW_S",
    "Campaign",
    "CampaignClient",
    "HealthProbe",
    "Tally",
    "campaign",
    "main",
    "percentile",
    "print_table",
    "run_worker",
    "secret_in_store",
    "shed",
    "verdict",
]

HEALTH_TARGET_MS = 20.0
QUICK = {"random": 250, "brute": 60, "dags": 6, "cursors": 1, "chunked": 3, "wide": 3}
FULL = {"random": 2500, "brute": 200, "dags": 30, "cursors": 3, "chunked": 10, "wide": 10}


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
