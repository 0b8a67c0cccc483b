"""Helpers the patterns share: deterministic draws, capability lookups, failure-tolerant steps."""

from __future__ import annotations

import hashlib
from typing import Any

from nofx.domain import Message
from nofx.execution import Execution, StepError, StepResult


def draw(*parts: object) -> float:
    """A uniform number in [0, 1) fixed by its inputs, so a resumed session decides the same way."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def has_capability(execution: Execution, capability: str) -> bool:
    return bool(execution.runtime.candidates(execution.session.tenant_id, capability))


def sibling_capability(execution: Execution, capability: str, verb: str) -> str:
    """``code.generate`` -> ``code.review`` when some agent offers it, else the capability itself."""
    domain = capability.split(".")[0]
    candidate = f"{domain}.{verb}"
    return candidate if has_capability(execution, candidate) else capability


async def try_step(execution: Execution, *args: object, **kwargs: object) -> StepResult | StepError:
    """Run a step; a step that runs out of options is returned, not raised, so the pattern decides."""
    try:
        return await execution.call_step(*args, **kwargs)  # type: ignore[arg-type]
    except StepError as failed:
        return failed


def say(
    execution: Execution,
    message_id: str,
    sender: str,
    body: dict[str, Any],
    *,
    to: str | None = None,
) -> None:
    """Publish on the session topic, or directly to agent ``to``, through the message bus.
    The id is derived from the step, so a resumed session publishes each message once."""
    session = execution.session
    execution.publish(  # queued on the store's writer: the event loop does not wait
        Message(
            message_id=message_id[:100],
            session_id=session.session_id,
            sender=sender,
            topic=None if to else f"session-{session.session_id}",
            recipient=to,
            body=body,
            tenant_id=session.tenant_id,
        )
    )
