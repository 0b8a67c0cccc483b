"""The dashboards' writes go through the HTTP API with the user's own key, never the store:
the API checks the key's scope and tenant and records who did it in the audit trail."""

from __future__ import annotations

import os

import httpx

DEFAULT_API_URL = "http://127.0.0.1:8000"


class ApiRefused(Exception):
    """The API said no (bad key, missing scope, unknown alert) or could not be reached."""


def api_url() -> str:
    """Where the API answers: NOFX_API_URL (set by `nofx up`), else the local default."""
    return os.environ.get("NOFX_API_URL", DEFAULT_API_URL).rstrip("/")


def resolve_alert(client: httpx.Client, key: str, alert_id: str, note: str = "") -> dict:
    """POST /api/v1/alerts/{id}/resolve as the key's owner; the resolved alert, or ApiRefused
    with the API's own explanation (problem+json ``detail``)."""
    if not key.strip():
        raise ApiRefused("paste an API key with the write scope first (`nofx keys create`)")
    try:
        response = client.post(
            f"/api/v1/alerts/{alert_id}/resolve",
            json={"note": note},
            headers={"Authorization": f"Bearer {key.strip()}"},
        )
    except httpx.HTTPError as exc:
        raise ApiRefused(f"the API at {client.base_url} did not answer ({exc})") from exc
    if response.status_code != 200:
        try:
            detail = response.json().get("detail") or response.text
        except ValueError:
            detail = response.text
        raise ApiRefused(f"the API refused ({response.status_code}): {detail}")
    return dict(response.json())
