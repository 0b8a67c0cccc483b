"""Swarm: peers share the work of a task, in parallel, handing items to each other on failure.

Termination is explicit: the goal is met when every item is done; the swarm
stops early when the budget is spent, when two turns in a row finish nothing
(stall), or after a bounded number of turns. Each handoff is an event with an
idempotency key, and an item is pending in exactly one place at a time, so no
handoff is lost or done twice; there is no livelock because turns are bounded.

The work items come from the task: a JSON list (or ``{"items": [...]}``) or a numbered or
bulleted list in its prompt, one item each; a prompt without a list is split into numbered
parts of the same task. Step ids name items by position (``swarm/item<i>/<try>``); the
prompt carries the item's text.

The peers coordinate through the bus: a handoff is a direct message to the peer taking the
item over, a finished item is announced on the session topic, and its output goes into the
session's shared context, where every peer's next prompt can see what is done.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque

from nofx.bus import SharedContext
from nofx.execution import Execution, PatternResult, StepError, StepResult
from nofx.patterns.common import say, try_step
from nofx.patterns.pair import first_json_object
from nofx.routing.selection import SelectionRequest

PEERS = 3
STALL_TURNS = 2


MAX_ITEMS = 50


def work_items(prompt: str, complexity: float) -> list[str]:
    """The task's own items (see the module docstring), at most ``MAX_ITEMS``."""
    from nofx.patterns.hierarchical import parse_subtasks

    text = prompt
    try:
        data = first_json_object(prompt) if "{" in prompt else None
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        text = json.dumps({"subtasks": data["items"]})
    items = parse_subtasks(text, limit=MAX_ITEMS)
    if items:
        return items
    n = 2 + round(complexity * 4)
    return [f"{prompt} (part {i + 1} of {n})" for i in range(n)]


def form_swarm(execution: Execution, prefix: str = "swarm", capability: str = "") -> list[str]:
    """The peers, chosen once and recorded, so a resumed session has the same swarm."""
    formed = next(
        (
            e
            for e in execution.history
            if e.type == "SwarmFormed" and e.payload.get("prefix", "swarm") == prefix
        ),
        None,
    )
    if formed is not None:
        return list(formed.payload["peers"])
    capability = capability or execution.session.task.capability
    candidates = execution.runtime.candidates(execution.session.tenant_id, capability)
    ranked = execution.runtime.selector.rank(
        SelectionRequest(capability=capability, tenant_id=execution.session.tenant_id),
        candidates,
    )
    peers = [s.agent.agent_id for s in ranked[:PEERS]]
    if not peers:
        raise StepError(f"{prefix}/form", "no_eligible_agent", f"no agent offers {capability}")
    execution.emit(
        "SwarmFormed",
        {"peers": peers, "prefix": prefix},
        key=f"{execution.session.session_id}/{prefix}/formed",
    )
    return peers


async def run_swarm(execution: Execution) -> PatternResult:
    task = execution.session.task
    return await swarm(execution, "swarm", task.prompt, task.capability, task.complexity)


async def swarm(
    execution: Execution, prefix: str, prompt: str, capability: str, complexity: float
) -> PatternResult:
    """The swarm over any prompt; ``prefix`` names its steps (``swarm`` for a session,
    ``wf/<step>`` inside a workflow)."""
    sid = execution.session.session_id
    peers = form_swarm(execution, prefix, capability)
    everyone = {
        a.agent_id for a in execution.runtime.candidates(execution.session.tenant_id, capability)
    }
    texts = work_items(prompt, complexity)
    items = [f"item{i}" for i in range(len(texts))]
    text = dict(zip(items, texts, strict=True))
    owner = {item: i % len(peers) for i, item in enumerate(items)}
    tries = dict.fromkeys(items, 0)
    pending = deque(items)
    done: dict[str, StepResult] = {}
    turn, stalls, reason = 0, 0, "goal_met"
    context = SharedContext(execution.runtime.store)
    max_turns = 4 * len(items)
    while pending:
        if turn >= max_turns:
            reason = "turns_exhausted"
            break
        if (
            execution.session.budget_usd is not None
            and execution.spent_usd() >= execution.session.budget_usd
        ):
            reason = "budget_spent"
            break
        turn += 1
        batch = [pending.popleft() for _ in range(min(len(peers), len(pending)))]

        finished_so_far = ", ".join(sorted(done)) or "none"

        async def attempt(item: str, so_far: str = finished_so_far) -> StepResult | StepError:
            peer = peers[owner[item]]
            return await try_step(
                execution,
                f"{prefix}/{item}/{tries[item]}",
                capability,
                f"{text[item]}\n\n[part of: {prompt[:500]}; done by the swarm so far: {so_far}]",
                exclude=frozenset(everyone - {peer}),
                max_attempts=2,
            )

        results = await asyncio.gather(*(attempt(item) for item in batch))
        finished = 0
        for item, result in zip(batch, results, strict=True):
            if isinstance(result, StepResult):
                done[item] = result
                finished += 1
                # rewritten on a resume, with the same value: a crash between the step and
                # this write must not leave the context without the item
                output = {"agent_id": result.agent_id, "output": result.output}
                context.put(sid, f"{prefix}/{item}", output)
                say(
                    execution,
                    f"{sid}/{prefix}/{item}/done",
                    result.agent_id,
                    {"item": item, "text": text[item][:200]},
                )
                continue
            before = peers[owner[item]]
            owner[item] = (owner[item] + 1) % len(peers)
            tries[item] += 1
            execution.emit(
                "HandoffRecorded",
                {
                    "item": item,
                    "from_agent_id": before,
                    "to_agent_id": peers[owner[item]],
                    "turn": turn,
                },
                key=f"{sid}/{prefix}/{item}/handoff/{tries[item]}",
            )
            say(
                execution,
                f"{sid}/{prefix}/{item}/handoff/{tries[item]}",
                before,
                {"item": item, "handoff": True, "turn": turn, "reason": result.error_type},
                to=peers[owner[item]],
            )
            pending.append(item)
        out_of_money = any(
            isinstance(r, StepError) and r.error_type == "budget_exhausted" for r in results
        )
        if out_of_money:
            reason = "budget_spent"
            break
        stalls = 0 if finished else stalls + 1
        if stalls >= STALL_TURNS:
            reason = "stalled"
            break
    details = {
        "peers": peers,
        "turns": turn,
        "items": len(items),
        "done": len(done),
        "termination": reason,
    }
    if reason != "goal_met":
        raise StepError(
            f"{prefix}/terminate",
            f"swarm_{reason}",
            f"swarm stopped: {reason} ({len(done)}/{len(items)} items)",
        )
    first = done[items[0]]
    return PatternResult(
        output=" | ".join(done[i].output for i in items), agent_id=first.agent_id, details=details
    )
