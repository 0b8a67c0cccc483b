"""Calls a Python function as an agent: ``provider.config.callable = "package.module:function"``.

The function receives ``(prompt, context)`` and returns the output text, or a
dict ``{"output": ..., "input_tokens": ..., "output_tokens": ...}``. Async
functions are awaited; plain ones run in a worker thread so they never block
the runtime's event loop. A function may raise one of the agent errors itself
(e.g. ``TransientAgentError``) to choose how the failure is retried.

Only functions the operator policy allows are imported and called
(``python.allowed_callables`` exactly, or anything defined in
``python.allowed_modules``), checked again before every call.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import time
from collections.abc import Callable
from typing import Any

from nofx.agents.base import (
    AgentCall,
    AgentCallError,
    AgentFaultError,
    AgentResult,
    PermanentAgentError,
    PolicyBound,
    refused,
)
from nofx.agents.openai import estimate_tokens
from nofx.domain import Agent
from nofx.errors import NofxError
from nofx.security.policy import OperatorPolicy, check_python, module_allowed

AgentFunction = Callable[[str, dict[str, Any]], Any]


def resolve_callable(target: object, agent_name: str = "?") -> AgentFunction:
    """Import ``"module:attr.path"``; every way this can go wrong is a permanent error."""
    if not isinstance(target, str) or target.count(":") != 1:
        raise PermanentAgentError(
            f"agent {agent_name}: provider.config.callable must look like "
            f"'package.module:function', got {target!r}",
            error_type="configuration_error",
        )
    module_name, attr_path = target.split(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise PermanentAgentError(
            f"agent {agent_name}: cannot import module {module_name!r} for {target!r} "
            f"({type(exc).__name__}: {exc}); install it or add its folder to PYTHONPATH",
            error_type="import_error",
        ) from exc
    except Exception as exc:  # the module itself failed while importing
        raise PermanentAgentError(
            f"agent {agent_name}: importing {module_name!r} raised {type(exc).__name__}: {exc}",
            error_type="import_error",
        ) from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise PermanentAgentError(
                f"agent {agent_name}: {module_name!r} has no attribute {attr_path!r}; "
                "check the name after the colon in provider.config.callable",
                error_type="import_error",
            ) from None
    if not callable(obj):
        raise PermanentAgentError(
            f"agent {agent_name}: {target!r} is a {type(obj).__name__}, not a function",
            error_type="import_error",
        )
    return obj


def call_context(agent: Agent, call: AgentCall) -> dict[str, Any]:
    """What the function learns about the call besides the prompt."""
    return {
        **call.context,
        "agent_name": agent.name,
        "agent_id": agent.agent_id,
        "capability": call.capability,
        "call_id": call.call_id,
        "complexity": call.complexity,
        "input_tokens": call.input_tokens,
        "timeout_s": call.timeout_s,
        "options": dict(agent.provider.config.get("options", {})),
    }


def defined_in_allowed_module(target: str, function: object, policy: OperatorPolicy) -> bool:
    """A module grant covers what the module defines, not what it imported (``mod:os.system``)."""
    if target in policy.python.allowed_callables:
        return True
    module = getattr(function, "__module__", None)
    return isinstance(module, str) and module_allowed(module, policy.python.allowed_modules)


class PythonProvider(PolicyBound):
    """One provider object serves every ``python`` agent; imports are cached."""

    def __init__(self, policy: OperatorPolicy | None = None) -> None:
        super().__init__(policy)
        self._functions: dict[str, AgentFunction] = {}

    def function(self, agent: Agent) -> AgentFunction:
        policy = self.policy_for(agent)
        try:
            target = check_python(agent.provider.config, policy)
        except NofxError as exc:
            raise refused(agent, exc) from None
        if target not in self._functions:
            function = resolve_callable(target, agent.name)
            if not defined_in_allowed_module(target, function, policy):
                raise PermanentAgentError(
                    f"agent {agent.name}: {target} resolves to a function defined in "
                    f"{getattr(function, '__module__', '?')!r}, outside python.allowed_modules; "
                    "the operator must list it in python.allowed_callables",
                    error_type="policy_denied",
                )
            self._functions[target] = function
        return self._functions[target]

    async def invoke(self, agent: Agent, call: AgentCall) -> AgentResult:
        function = self.function(agent)
        context = call_context(agent, call)
        started = time.perf_counter()
        try:
            if inspect.iscoroutinefunction(function):
                value = await function(call.prompt, context)
            else:
                value = await asyncio.to_thread(function, call.prompt, context)
                if inspect.isawaitable(value):
                    value = await value
        except AgentCallError:
            raise
        except Exception as exc:
            raise AgentFaultError(
                f"{agent.name}: {type(exc).__name__}: {exc}",
                error_type=f"{type(exc).__module__}.{type(exc).__qualname__}",
                latency_ms=(time.perf_counter() - started) * 1000,
            ) from exc
        latency_ms = (time.perf_counter() - started) * 1000
        return self._result(agent, call, value, latency_ms)

    def _result(self, agent: Agent, call: AgentCall, value: Any, latency_ms: float) -> AgentResult:
        reported: dict[str, Any] = {}
        if isinstance(value, str):
            output = value
        elif isinstance(value, dict) and isinstance(value.get("output"), str):
            output = value["output"]
            reported = value
        else:
            raise AgentFaultError(
                f"{agent.name}: the function returned {type(value).__name__}; return a str "
                "or a dict with an 'output' string",
                error_type="bad_output",
                latency_ms=latency_ms,
            )
        try:
            input_tokens = int(reported.get("input_tokens") or estimate_tokens(call.prompt))
            output_tokens = int(reported.get("output_tokens") or estimate_tokens(output))
        except (TypeError, ValueError) as exc:
            raise AgentFaultError(
                f"{agent.name}: token counts must be integers ({exc})",
                error_type="bad_output",
                latency_ms=latency_ms,
            ) from exc
        estimated = not ("input_tokens" in reported and "output_tokens" in reported)
        return AgentResult(
            output=output,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=agent.pricing.cost(input_tokens, output_tokens),
            latency_ms=latency_ms,
            metadata={"tokens_estimated": estimated},
        )
