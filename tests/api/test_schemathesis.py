"""Schemathesis against the real server: uvicorn on loopback, a real admin key of one tenant,
every operation fuzzed on its own and then chained through the links Schemathesis finds
(stateful). Two checks must hold for every answer: no 5xx, and no status code the spec does
not document (errors are documented as problem+json on every operation)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance

from nofx.api.liveserver import LiveServer, Tenant, create_tenants

pytestmark = pytest.mark.slow  # about 90 s with the server start; `make test` runs it

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance]
SETTINGS = settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


class Live:
    def __init__(self, server: LiveServer, tenant: Tenant) -> None:
        self.server = server
        self.tenant = tenant
        self.headers = tenant.auth("admin")
        self.key_id = tenant.keys["admin"].split("_")[1]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    home: Path = tmp_path_factory.mktemp("schemathesis")
    env = {"NOFX_API_TENANT_RATE_PER_S": "100000", "NOFX_API_TENANT_BURST": "100000"}
    server = LiveServer(home, env=env)
    tenant = create_tenants(server.database_url, ("alpha",), rate_per_s=100_000)["alpha"]
    with server:
        seed = {"name": "seed", "capabilities": [{"name": "code.generate"}]}
        httpx.post(server.url + "/api/v1/agents", json=seed, headers=tenant.auth("write"))
        yield Live(server, tenant)
        errors = server.log_tail()
        assert "Traceback" not in errors, errors


@pytest.fixture(scope="module")
def api_schema(live: Live) -> Any:
    return schemathesis.openapi.from_url(live.server.url + "/openapi.json")


def keep_own_key(case: Any, live: Live) -> None:
    """Fuzzing may revoke keys, but not the one it runs with."""
    if (case.path_parameters or {}).get("key_id") == live.key_id:
        case.path_parameters["key_id"] = "0000000000000000"


def test_every_operation_answers_only_what_it_documents(api_schema: Any, live: Live) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 30

    for operation in operations:

        @given(case=operation.as_strategy())
        @SETTINGS
        def fuzz(case: Any) -> None:
            keep_own_key(case, live)
            response = case.call(headers=live.headers)
            case.validate_response(response, checks=CHECKS)

        fuzz()


def test_chained_operations_answer_only_what_they_document(api_schema: Any, live: Live) -> None:
    machine = api_schema.as_state_machine()

    class WithKey(machine):  # type: ignore[misc, valid-type]
        def before_call(self, case: Any) -> None:
            keep_own_key(case, live)

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": live.headers}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            case.validate_response(response, checks=CHECKS)

    WithKey.run(
        settings=settings(
            max_examples=15,
            stateful_step_count=6,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
    )
