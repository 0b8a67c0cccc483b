"""Each JSON body is parsed once: by the edge, which checks it, and the route reuses that.

The edge middleware (nofx/api/observability.py) parses every JSON body to refuse NaN,
Infinity and nesting past the limit, in a worker thread when the body is large. FastAPI would
then parse the same bytes again, on the event loop. ``ParsedJsonRoute`` hands the route the
value the edge left in the request's scope state, so a large body costs the loop nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

PARSED_JSON = "nofx.parsed_json"
"""The scope-state key under which the edge leaves a body it parsed and accepted."""


class ParsedJsonRoute(APIRoute):
    """An APIRoute whose ``request.json()`` is the value the edge already parsed (if any)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def parsed_once(request: Request) -> Response:
            state = request.scope.get("state") or {}
            if PARSED_JSON in state:
                request._json = state[PARSED_JSON]
            return await handler(request)

        return parsed_once
