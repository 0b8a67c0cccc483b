"""Pair: an author writes, a reviewer with the complementary capability accepts or asks for a revision.

Bounded rounds; every round is recorded (ReviewRecorded) and returned in the
outcome, and the verdict reaches the author on its direct channel of the message bus.
The reviewer is never the author.

The verdict depends on both of them: a flaw in the work (probability ``1 - quality``) is
caught with the reviewer's own quality on the review, so a weak reviewer waves poor work
through and a strong one sends it back. The draw is deterministic, so replaying a session
decides the same.
"""

from __future__ import annotations

from nofx.patterns.common import draw, say, sibling_capability
from nofx.runtime import PatternResult, SessionExecution, StepFailed

MAX_ROUNDS = 3


def acceptance_probability(author_quality: float | None, reviewer_quality: float | None) -> float:
    """Work is accepted when it has no flaw, or has one the reviewer misses."""
    work = 0.8 if author_quality is None else author_quality
    reviewer = 0.8 if reviewer_quality is None else reviewer_quality
    return work + (1 - work) * (1 - reviewer)


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
        author = await execution.call_step(
            f"pair/author/{number}",
            task.capability,
            prompt,
            write_with_next=True,  # with the review step's start
        )
        review = await execution.call_step(
            f"pair/review/{number}",
            review_capability,
            f"Review this work: {author.output}",
            exclude=frozenset({author.agent_id}),
            complexity=max(0.0, task.complexity - 0.2),
            write_with_next=True,  # recorded with its verdict, in one transaction
        )
        p_accept = acceptance_probability(author.quality, review.quality)
        accepted = draw(sid, "review", number) < p_accept
        verdict = "accepted" if accepted else "revise"
        execution.emit(
            "ReviewRecorded",
            {
                "round": number,
                "author_agent_id": author.agent_id,
                "reviewer_agent_id": review.agent_id,
                "verdict": verdict,
                "author_quality": author.quality,
                "reviewer_quality": review.quality,
                "p_accept": round(p_accept, 4),
            },
            key=f"{sid}/pair/review/{number}/verdict",
        )
        say(
            execution,
            f"{sid}/pair/review/{number}",
            review.agent_id,
            {"round": number, "verdict": verdict, "review": review.output},
            to=author.agent_id,
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
