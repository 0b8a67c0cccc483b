"""/docs and /redoc from files served by this API, so they render without internet.

FastAPI's default pages load Swagger UI and ReDoc from a CDN and are blank offline; the
same pages here point at the bundles shipped in the ``fastapi-offline`` wheel.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request, Response
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs-assets"
ASSETS_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
# ReDoc's sidebar credit loads its logo from a CDN; offline that is a failed request
REDOC_CDN_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
REDOC_OFFLINE_JS = "redoc.offline.js"


@cache
def redoc_offline_js() -> bytes:
    """ReDoc's bundle with its one CDN reference pointed at the local favicon."""
    bundle = (ASSETS_DIR / "redoc.standalone.js").read_text(encoding="utf-8")
    return bundle.replace(REDOC_CDN_LOGO, f"{ASSETS_URL}/favicon.png").encode()


def install(app: FastAPI, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Serve Swagger UI at ``docs_url`` and ReDoc at ``redoc_url`` from local assets.

    The app must be built with ``docs_url=None, redoc_url=None`` (FastAPI's CDN pages off).
    """
    if not (ASSETS_DIR / "swagger-ui-bundle.js").is_file():  # pragma: no cover - packaging
        raise RuntimeError(
            f"Swagger UI assets are missing from {ASSETS_DIR}: reinstall with "
            "`pip install -c constraints.txt -e .`"
        )

    @app.get(f"{ASSETS_URL}/{REDOC_OFFLINE_JS}", include_in_schema=False)
    async def redoc_js() -> Response:  # before the mount, which would shadow it
        return Response(
            redoc_offline_js(),
            media_type="application/javascript",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - API docs",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
        )

    @app.get(redoc_url, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/{REDOC_OFFLINE_JS}",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
