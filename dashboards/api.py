"""The dashboards' writes go through the HTTP API with the user's own key, never the store:
the API checks the key's scope and tenant and records who did it in the audit trail."""

from __future__ import annotations

import httpx

from nofx.settings import Settings

DEFAULT_API_URL = "http://127.0.0.1:8000"


class ApiRefused(Exception):
    """The API said no (bad key, missing scope, unknown alert) or could not be reached."""


def api_url() -> str:
    """Where the API answers: NOFX_API_URL (set by `nofx up`), else the local default."""
    return Settings.from_env().api_url.rstrip("/")


def resolve_alert(client: httpx.Client, key: str, alert_id: str, note: str = "") -> dict:
    """POST /api/v1/alerts/{id}/resolve as the key's owner; the resolved alert, or ApiRefused
    with the API's own explanation (problem+json ``detail``)."""
    return _call(client, key, "POST", f"/api/v1/alerts/{alert_id}/resolve", {"note": note})


def acknowledge_alert(client: httpx.Client, key: str, alert_id: str, note: str = "") -> dict:
    """POST /api/v1/alerts/{id}/acknowledge as the key's owner: someone is on it."""
    return _call(client, key, "POST", f"/api/v1/alerts/{alert_id}/acknowledge", {"note": note})


def list_alerts(client: httpx.Client, key: str, status: str) -> list[dict]:
    """The key's tenant's alerts in one status (the API shows a tenant only its own)."""
    page = _call(client, key, "GET", "/api/v1/alerts", None, {"status": status, "limit": 500})
    return list(page["items"])


def _call(
    client: httpx.Client,
    key: str,
    method: str,
    path: str,
    body: dict | None,
    params: dict | None = None,
) -> dict:
    if not key.strip():
        raise ApiRefused("paste an API key with the write scope first (`nofx keys create`)")
    try:
        response = client.request(
            method,
            path,
            json=body,
            params=params,
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
