"""Response examples for the OpenAPI spec, recorded from real calls rather than written by hand.

``python -m nofx.api.examples`` copies a state directory that ``make demo`` filled (agents,
finished sessions, alerts, pools, and the warehouse's analytics), calls every operation of
the API once against the copy with the request examples the spec already carries, and
writes the answers to ``openapi_examples.json`` beside this module. ``create_app`` attaches
them to the spec, and a test checks that every operation has one and that each still
validates against its response schema, so the examples cannot drift from the models.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from nofx.api.spec_examples import (
    EXAMPLES_FILE,
    SUMMARY,
    attach_response_examples,
    load_examples,
)

__all__ = [
    "EXAMPLES_FILE",
    "SUMMARY",
    "attach_response_examples",
    "load_examples",
    "main",
    "record",
]


def request_example(operation: dict[str, Any]) -> Any:
    content = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    examples = content.get("examples") or {}
    for example in examples.values():
        return example.get("value")
    return content.get("example")


def _first(items: list[dict[str, Any]], key: str) -> str:
    if not items:
        raise SystemExit(f"nothing to take a {key} from: run `make demo` first")
    return str(items[0][key])


def record(client: Any) -> tuple[dict[str, Any], list[str]]:
    """Call every operation once; returns (examples by 'METHOD path', problems)."""
    spec = client.get("/openapi.json").json()
    agents = client.get("/api/v1/agents", params={"limit": 5}).json()["items"]
    sessions = client.get("/api/v1/orchestration/sessions", params={"limit": 5}).json()["items"]
    alerts = client.get("/api/v1/alerts").json()["items"]
    agent_id = _first(agents, "agent_id")
    capability = agents[0]["capabilities"][0]["name"]
    pending = client.post(
        "/api/v1/orchestration/sessions",
        json={"task": {"capability": capability, "prompt": "summarise the incident"}},
    ).json()
    from nofx.api.routes.workflows import EXAMPLE as WORKFLOW

    workflow = client.post(
        "/api/v1/orchestration/sessions",
        json={
            "task": {"capability": "code.generate", "prompt": "add a login page"},
            "pattern": "workflow",
            "workflow": WORKFLOW,
        },
    ).json()
    ids = {
        "agent_id": agent_id,
        "session_id": _first(sessions, "session_id"),
        "alert_id": _first(alerts, "alert_id") if alerts else "none",
        "channel": f"session:{_first(sessions, 'session_id')}",
        "rule_id": "daily_spend",  # defined by the PUT examples before they are read
        "name": "daily_spend_usd",
    }
    pools = client.get("/api/v1/orchestration/pools").json()
    if not pools:  # the pool pages need one: give the first agent a pool as the spec shows
        put = spec["paths"]["/api/v1/orchestration/pools/{agent_id}"]["put"]
        client.put(f"/api/v1/orchestration/pools/{agent_id}", json=request_example(put))
        pools = client.get("/api/v1/orchestration/pools").json()
    pool_agent = _first(pools, "agent_id")
    queries: dict[str, dict[str, Any]] = {
        "/api/v1/orchestration/agents/select": {"capability": capability},
    }
    examples: dict[str, Any] = {}
    problems: list[str] = []
    for path, operations in spec["paths"].items():
        if not path.startswith("/api/v1"):
            continue
        for method, operation in operations.items():
            key = f"{method.upper()} {path}"
            success = [code for code in operation.get("responses", {}) if code.startswith("2")]
            if not success or success[0] == "204":
                continue
            concrete = path.format(**ids)
            if path.startswith("/api/v1/orchestration/pools/"):
                concrete = path.format(agent_id=pool_agent)
            if path.endswith("/cancel"):
                concrete = path.format(**{**ids, "session_id": pending["session_id"]})
            body = request_example(operation)
            if path == "/api/v1/agents" and method == "post":
                body = {**body, "name": "example-coder"}
            if path == "/api/v1/agents/{agent_id}" and method == "put":
                concrete = path.format(agent_id=ids.get("new_agent_id", agent_id))
                body = {**body, "name": "example-coder"}
            if path.endswith("/adapt"):
                body = {**body, "session_id": workflow["session_id"]}
            params: dict[str, Any] | None = None
            if method == "get":  # lists show three items; one-item reads take no limit
                params = queries.get(path) if "{" in path else {"limit": 3, **queries.get(path, {})}
            answer = client.request(method.upper(), concrete, json=body, params=params)
            if answer.status_code >= 300:
                problems.append(f"{key}: {answer.status_code} {answer.text[:300]}")
                continue
            examples[key] = {"status": answer.status_code, "body": _trim(answer.json())}
            if key == "POST /api/v1/keys":  # shown once, and not even in an example
                prefix, _, secret = examples[key]["body"]["key"].rpartition("_")
                examples[key]["body"]["key"] = f"{prefix}_{'x' * len(secret)}"
            if key == "POST /api/v1/agents":
                ids["new_agent_id"] = answer.json()["agent_id"]
            if key == "POST /api/v1/orchestration/communicate":
                ids["channel"] = answer.json()["channel"]
    return examples, problems


def _trim(body: Any, items: int = 3) -> Any:
    """Keep lists short: an example shows the shape, not the whole fleet."""
    if isinstance(body, list):
        return [_trim(b, items) for b in body[:items]]
    if isinstance(body, dict):
        return {k: _trim(v, items) for k, v in body.items()}
    return body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--home",
        type=Path,
        default=Path(os.environ.get("NOFX_HOME", ".nofx")),
        help="a state directory `make demo` filled (copied, never changed)",
    )
    parser.add_argument("--out", type=Path, default=EXAMPLES_FILE)
    args = parser.parse_args(argv)
    if not (args.home / "warehouse.duckdb").exists():
        print(f"{args.home} holds no demo output: run `make demo` first", file=sys.stderr)
        return 2
    from fastapi.testclient import TestClient

    from nofx.api.app import create_app
    from nofx.settings import Settings

    with tempfile.TemporaryDirectory(prefix="nofx-examples-") as scratch:
        home = Path(scratch) / "home"
        shutil.copytree(args.home, home, ignore=shutil.ignore_patterns("dagster_home", "*.log"))
        os.environ["NOFX_HOME"] = str(home)
        os.environ.pop("NOFX_DATABASE_URL", None)
        os.environ.pop("NOFX_WAREHOUSE_PATH", None)
        app = create_app(Settings.from_env(), auth_required=False)
        with TestClient(app) as client:
            examples, problems = record(client)
    args.out.write_text(json.dumps(examples, indent=2, sort_keys=True, default=str) + "\n")
    print(f"recorded {len(examples)} response examples in {args.out}")
    for problem in problems:
        print(f"  not recorded: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
