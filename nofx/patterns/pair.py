"""Pair: an author writes, a reviewer with the complementary capability accepts or asks for a revision.

Bounded rounds; every round is recorded (ReviewRecorded) and returned in the
outcome. The reviewer is never the author. The verdict is a deterministic draw
against the author's output quality, so replaying a session decides the same.
"""

from __future__ import annotations

from nofx.patterns.common import draw, sibling_capability
from nofx.runtime import PatternResult, SessionExecution, StepFailed

MAX_ROUNDS = 3


async def run_pair(execution: SessionExecution) -> PatternResult:
    task = execution.session.task
    sid = execution.session.session_id
    review_capability = sibling_capability(execution, task.capability, "review")
    rounds = []
    for number in range(1, MAX_ROUNDS + 1):
        prompt = (
            task.prompt
            if number == 1
            else f"{task.prompt}\n\nRevise after review round {number - 1}."
        )
        author = await execution.call_step(f"pair/author/{number}", task.capability, prompt)
        review = await execution.call_step(
            f"pair/review/{number}",
            review_capability,
            f"Review this work: {author.output}",
            exclude=frozenset({author.agent_id}),
            complexity=max(0.0, task.complexity - 0.2),
        )
        quality = author.quality if author.quality is not None else 0.8
        accepted = draw(sid, "review", number) < quality
        verdict = "accepted" if accepted else "revise"
        execution.emit(
            "ReviewRecorded",
            {
                "round": number,
                "author_agent_id": author.agent_id,
                "reviewer_agent_id": review.agent_id,
                "verdict": verdict,
            },
            key=f"{sid}/pair/review/{number}/verdict",
        )
        rounds.append(
            {
                "round": number,
                "author": author.agent_name,
                "reviewer": review.agent_name,
                "verdict": verdict,
            }
        )
        if accepted:
            return PatternResult(
                output=author.output, agent_id=author.agent_id, details={"rounds": rounds}
            )
    raise StepFailed(
        f"pair/review/{MAX_ROUNDS}", "review_rejected", f"not accepted after {MAX_ROUNDS} rounds"
    )
