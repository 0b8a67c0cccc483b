"""Functions that the PythonProvider tests call as agents."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from nofx.agents import TransientAgentError


def shout(prompt: str, context: dict[str, Any]) -> str:
    return f"{prompt.upper()} [{context['capability']} on {threading.current_thread().name}]"


async def counted(prompt: str, context: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"output": prompt[::-1], "input_tokens": 11, "output_tokens": 7}


def partly_counted(prompt: str, context: dict[str, Any]) -> dict[str, Any]:
    return {"output": "x" * 40, "input_tokens": 5}


def explodes(prompt: str, context: dict[str, Any]) -> str:
    raise ZeroDivisionError("model divided by zero")


def busy(prompt: str, context: dict[str, Any]) -> str:
    raise TransientAgentError("GPU queue is full", error_type="rate_limited")


def returns_number(prompt: str, context: dict[str, Any]) -> int:
    return 42


def bad_tokens(prompt: str, context: dict[str, Any]) -> dict[str, Any]:
    return {"output": "fine", "input_tokens": "many"}


def echo_options(prompt: str, context: dict[str, Any]) -> str:
    return f"{context['options']['style']}:{context['ticket']}"


def returns_coroutine(prompt: str, context: dict[str, Any]):
    return counted(prompt, context)


class Toolbox:
    @staticmethod
    def summarise(prompt: str, context: dict[str, Any]) -> str:
        return prompt[:5]


NOT_CALLABLE = "just a string"
