"""The recorded response examples (``openapi_examples.json``), attached to the OpenAPI spec.

``create_app`` reads them from here; ``python -m nofx.api.examples`` records them, and
imports the app to do so, so the two halves live apart (no import cycle).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EXAMPLES_FILE = Path(__file__).with_name("openapi_examples.json")
SUMMARY = "recorded from a real call against the demo (simulated agents)"


def load_examples(path: Path = EXAMPLES_FILE) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def attach_response_examples(spec: dict[str, Any], examples: dict[str, Any]) -> dict[str, Any]:
    """Put each recorded answer on its operation's success response, in place."""
    for key, recorded in examples.items():
        method, path = key.split(" ", 1)
        operation = spec.get("paths", {}).get(path, {}).get(method.lower())
        if operation is None:
            continue  # an operation that no longer exists; the test reports stale entries
        response = operation.get("responses", {}).get(str(recorded["status"]))
        content = (response or {}).get("content", {}).get("application/json")
        if content is not None:
            content["examples"] = {"recorded": {"summary": SUMMARY, "value": recorded["body"]}}
    return spec
