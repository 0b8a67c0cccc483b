"""The recorder of response examples works on any filled state directory, and refuses an
empty one with what to run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from nofx.alerts import DEFAULT_RULES, AlertService, Observation, evaluate
from nofx.api.app import create_app
from nofx.api.examples import attach_response_examples, main, record
from nofx.fleet import demo_fleet, demo_requests
from nofx.registry import AgentRegistry
from nofx.runtime import Runtime, RuntimeConfig
from nofx.settings import Settings
from nofx.store import EventStore


def filled(store: EventStore) -> None:
    registry = AgentRegistry(store)
    for spec in demo_fleet():
        registry.register(spec)
    runtime = Runtime(store, registry, config=RuntimeConfig(time_scale=0.0))
    for request in demo_requests(5):
        runtime.sessions.submit(request)
    import asyncio

    asyncio.run(runtime.run_pending())
    failing = Observation("orchestration_failure_rate", "default", 0.2, samples=100)
    AlertService(store).sync(evaluate(DEFAULT_RULES, [failing]), {"orchestration_failure_rate"})


def test_every_operation_is_recorded_from_a_real_call(
    settings: Settings, store: EventStore
) -> None:
    filled(store)
    with TestClient(create_app(settings, store=store, auth_required=False)) as client:
        examples, problems = record(client)
        spec = client.get("/openapi.json").json()
    assert problems == []
    json_operations = {
        f"{m.upper()} {p}"
        for p, ops in spec["paths"].items()
        for m, op in ops.items()
        if p.startswith("/api/v1")
        and any(c.startswith("2") and c != "204" for c in op["responses"])
    }
    assert set(examples) == json_operations
    assert examples["POST /api/v1/keys"]["body"]["key"].endswith("xxxx")  # no secret kept
    assert all(len(e["body"]["items"]) <= 3 for e in examples.values() if "items" in e["body"])
    patched = attach_response_examples(spec, {"GET /api/v1/health": examples["GET /api/v1/health"]})
    health = patched["paths"]["/api/v1/health"]["get"]["responses"]["200"]["content"]
    assert health["application/json"]["examples"]["recorded"]["value"]["status"]


def test_the_recorder_wants_demo_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--home", str(tmp_path), "--out", str(tmp_path / "x.json")]) == 2
    assert "run `make demo` first" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_the_committed_examples_are_json_with_statuses() -> None:
    from nofx.api.examples import EXAMPLES_FILE

    recorded = json.loads(EXAMPLES_FILE.read_text())
    assert recorded and all(e["status"] in (200, 201, 202) for e in recorded.values())
