"""Swarm: peers share the work of a task, in parallel, handing items to each other on failure.

Termination is explicit: the goal is met when every item is done; the swarm
stops early when the budget is spent, when two turns in a row finish nothing
(stall), or after a bounded number of turns. Each handoff is an event with an
idempotency key, and an item is pending in exactly one place at a time, so no
handoff is lost or done twice; there is no livelock because turns are bounded.

The peers coordinate through the bus: a handoff is a direct message to the peer taking the
item over, a finished item is announced on the session topic, and its output goes into the
session's shared context, where every peer's next prompt can see what is done.
"""

from __future__ import annotations

import asyncio
from collections import deque

from nofx.bus import SharedContext
from nofx.patterns.common import say, try_step
from nofx.routing.selection import SelectionRequest
from nofx.runtime import PatternResult, SessionExecution, StepFailed, StepResult

PEERS = 3
STALL_TURNS = 2


def work_items(complexity: float) -> list[str]:
    return [f"item{i}" for i in range(2 + round(complexity * 4))]


def form_swarm(execution: SessionExecution) -> list[str]:
    """The peers, chosen once and recorded, so a resumed session has the same swarm."""
    formed = next((e for e in execution.history if e.type == "SwarmFormed"), None)
    if formed is not None:
        return list(formed.payload["peers"])
    task = execution.session.task
    candidates = execution.runtime.candidates(execution.session.tenant_id, task.capability)
    ranked = execution.runtime.selector.rank(
        SelectionRequest(capability=task.capability, tenant_id=execution.session.tenant_id),
        candidates,
    )
    peers = [s.agent.agent_id for s in ranked[:PEERS]]
    if not peers:
        raise StepFailed("swarm/form", "no_eligible_agent", f"no agent offers {task.capability}")
    execution.emit(
        "SwarmFormed", {"peers": peers}, key=f"{execution.session.session_id}/swarm/formed"
    )
    return peers


async def run_swarm(execution: SessionExecution) -> PatternResult:
    task = execution.session.task
    sid = execution.session.session_id
    peers = form_swarm(execution)
    everyone = {
        a.agent_id
        for a in execution.runtime.candidates(execution.session.tenant_id, task.capability)
    }
    items = work_items(task.complexity)
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

        async def attempt(item: str, so_far: str = finished_so_far) -> StepResult | StepFailed:
            peer = peers[owner[item]]
            return await try_step(
                execution,
                f"swarm/{item}/{tries[item]}",
                task.capability,
                f"{task.prompt} [{item}; done by the swarm so far: {so_far}]",
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
                context.put(sid, f"swarm/{item}", output)
                say(execution, f"{sid}/swarm/{item}/done", result.agent_id, {"item": item})
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
                key=f"{sid}/swarm/{item}/handoff/{tries[item]}",
            )
            say(
                execution,
                f"{sid}/swarm/{item}/handoff/{tries[item]}",
                before,
                {"item": item, "handoff": True, "turn": turn, "reason": result.error_type},
                to=peers[owner[item]],
            )
            pending.append(item)
        out_of_money = any(
            isinstance(r, StepFailed) and r.error_type == "budget_exhausted" for r in results
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
        raise StepFailed(
            "swarm/terminate",
            f"swarm_{reason}",
            f"swarm stopped: {reason} ({len(done)}/{len(items)} items)",
        )
    first = done[items[0]]
    return PatternResult(
        output=" | ".join(done[i].output for i in items), agent_id=first.agent_id, details=details
    )
