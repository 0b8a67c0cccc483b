"""/docs and /redoc load every asset from this API (no CDN): they render without internet."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from nofx.api.app import create_app
from nofx.store import EventStore


def test_docs_pages_reference_only_local_assets_which_are_served(store: EventStore) -> None:
    with TestClient(create_app(store=store, auth_required=True)) as client:
        for page, assets in (
            ("/docs", ("swagger-ui-bundle.js", "swagger-ui.css")),
            ("/redoc", ("redoc.offline.js",)),
        ):
            html = client.get(page)
            assert html.status_code == 200, page
            urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html.text)
            assert urls, page
            assert all(u.startswith("/") for u in urls), f"{page} loads from elsewhere: {urls}"
            assert "cdn" not in html.text.lower(), page
            for asset in assets:
                assert f"/docs-assets/{asset}" in urls, (page, asset)
                served = client.get(f"/docs-assets/{asset}")  # no key needed, like the page
                assert served.status_code == 200, asset
                assert len(served.content) > 10_000, asset
        assert "/openapi.json" in client.get("/docs").text
        # the bundles name no other host (ReDoc's credit logo is pointed at ours)
        redoc = client.get("/docs-assets/redoc.offline.js").text
        assert "cdn.redoc.ly" not in redoc and "/docs-assets/favicon.png" in redoc
        assert client.get("/openapi.json").json()["info"]["title"] == "NOFX control plane"
