"""Schemathesis against the app's own OpenAPI schema: generated requests never cause a server error."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from nofx.api.app import create_app
from nofx.domain import AgentSpec
from nofx.registry import AgentRegistry
from nofx.store import EventStore

pytestmark = pytest.mark.slow

_home = Path(tempfile.mkdtemp(prefix="nofx-schemathesis-"))
_store = EventStore(f"sqlite:///{_home / 'nofx.db'}")
AgentRegistry(_store).register(AgentSpec(name="seed", capabilities=[{"name": "code.generate"}]))
app = create_app(store=_store, auth_required=False)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_generated_request_causes_a_server_error(case) -> None:
    response = case.call()
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:500]}"
    )
    if response.status_code >= 400:
        content_type = response.headers.get("content-type") or [""]
        content_type = content_type[0] if isinstance(content_type, list) else content_type
        assert content_type.startswith("application/problem+json"), (
            case.method,
            case.formatted_path,
        )
