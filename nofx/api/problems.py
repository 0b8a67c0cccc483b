"""Errors as application/problem+json (RFC 9457), each with a stable ``type`` URI."""

from __future__ import annotations

import logging
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
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.method} {request.url.path}; see /docs for the API"
        return problem(
            exc.status_code,
            code,
            code.replace("-", " ").capitalize(),
            detail,
            str(request.url.path),
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
