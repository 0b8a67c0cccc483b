"""Errors as application/problem+json (RFC 9457), each with a stable ``type`` URI."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError as PydanticValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from nofx.errors import ConcurrencyError, NofxError

log = logging.getLogger(__name__)
PROBLEM_BASE = "https://nofx.dev/problems/"
MEDIA_TYPE = "application/problem+json"
HTTP_METHODS = {"GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS"}


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {"type": PROBLEM_BASE + code, "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "what went wrong and what to do next"},
        "instance": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}
PROBLEM_STATUSES = {
    400: "Bad request",
    401: "No valid API key (WWW-Authenticate: Bearer)",
    403: "The key lacks the scope, or the operator's policy refuses it",
    404: "No such resource in the caller's tenant",
    405: "Method not allowed (the Allow header lists the methods)",
    409: "Conflict: a version, state or tenant ceiling (quota-exceeded)",
    412: "If-Match is not the current version (or not a version): read it again",
    413: "Body over the size limit (counted as it streams)",
    422: "Input not valid or over a limit; `errors` names the fields",
    429: "Over a rate limit or ceiling; Retry-After says when to retry",
    503: "Store, warehouse or analysis not available now; Retry-After when known",
}


def problem_responses() -> dict[int | str, dict[str, Any]]:
    """The error answers every operation may give, as problem+json (for the OpenAPI spec)."""
    return {
        status: {
            "description": description,
            "content": {MEDIA_TYPE: {"schema": PROBLEM_SCHEMA}},
        }
        for status, description in PROBLEM_STATUSES.items()
    }


def allowed_methods(app: Any, path: str) -> list[str]:
    """Every method the API serves at ``path`` (the Allow header of a 405), from the spec."""
    methods: set[str] = set()
    for template, operations in app.openapi().get("paths", {}).items():
        pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path):
            methods |= {m.upper() for m in operations if m.upper() in HTTP_METHODS}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def _field_errors(errors: list[Any]) -> list[dict[str, str]]:
    out = []
    for e in errors:
        loc = [str(p) for p in e.get("loc", ())]
        out.append({"field": ".".join(loc), "message": e.get("msg", ""), "type": e.get("type", "")})
    return out


def install(app: FastAPI) -> None:
    """Route every error through problem+json; nothing leaks a stack trace."""

    @app.exception_handler(NofxError)
    async def _nofx(request: Request, exc: NofxError) -> JSONResponse:
        status = exc.http_status
        if isinstance(exc, ConcurrencyError) and request.headers.get("if-match"):
            status = 412
        detail = exc.message + (f" — {exc.hint}" if exc.hint else "")
        title = exc.code.replace("-", " ").capitalize()
        headers = getattr(exc, "headers", None)
        return problem(status, exc.code, title, detail, str(request.url.path), headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _field_errors(list(exc.errors()))
        fields = ", ".join(e["field"] for e in errors[:5])
        return problem(
            422,
            "validation-error",
            "Request is not valid",
            f"fix these fields and send again: {fields}",
            str(request.url.path),
            errors=errors,
        )

    @app.exception_handler(PydanticValidationError)
    async def _pydantic(request: Request, exc: PydanticValidationError) -> JSONResponse:
        errors = _field_errors(list(exc.errors()))
        return problem(
            422,
            "validation-error",
            "Request is not valid",
            "see errors",
            str(request.url.path),
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not-found", 405: "method-not-allowed", 413: "payload-too-large"}.get(
            exc.status_code, f"http-{exc.status_code}"
        )
        detail = str(exc.detail) if exc.detail else "see the API docs at /docs"
        headers = dict(exc.headers or {})
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.method} {request.url.path}; see /docs for the API"
        if exc.status_code == 405:
            allow = allowed_methods(request.app, request.url.path)
            headers["Allow"] = ", ".join(allow)
            detail = f"{request.method} is not served here; use one of: {', '.join(allow)}"
        return problem(
            exc.status_code,
            code,
            code.replace("-", " ").capitalize(),
            detail,
            str(request.url.path),
            headers=headers or None,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(
            500,
            "internal-error",
            "Internal error",
            "the server failed to handle this request; it was logged. Retry, or report it.",
            str(request.url.path),
        )
