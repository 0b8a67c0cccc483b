"""Pair: an author writes, a reviewer with the complementary capability accepts or asks for a revision.

The reviewer answers with a structured verdict, a JSON object whose schema is in its prompt
(``VERDICT_SCHEMA``); the answer is parsed, and an answer that does not parse is a failed
review that says why (the author revises against that reason). A revision prompt carries the
review: its verdict, issues and summary. Bounded rounds; every round is recorded
(ReviewRecorded, which is also the reviewer -> author link in the agent_relationships
mart), and the verdict reaches the author on its direct channel of the message bus. The reviewer is never
the author.

The simulated reviewer answers in the same format (its verdict is a seeded draw that depends
on the author's and the reviewer's quality), so simulated and real agents run the same code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from nofx.agents.simulated import acceptance_probability
from nofx.execution import Execution, PatternResult, StepError
from nofx.patterns.common import say, sibling_capability

__all__ = ["MAX_ROUNDS", "Verdict", "acceptance_probability", "parse_verdict", "run_pair"]

MAX_ROUNDS = 3
MAX_ISSUES = 20
MAX_PARSE_CHARS = 200_000
MAX_PARSE_TRIES = 20
VERDICT_SCHEMA = '{"verdict": "accept" | "revise", "issues": [string, ...], "summary": string}'


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    issues: list[str] = field(default_factory=list)
    summary: str = ""
    error: str | None = None  # why the answer is not a verdict

    @property
    def label(self) -> str:
        return "accepted" if self.accepted else "unparseable" if self.error else "revise"


def first_json_object(text: str) -> Any:
    """The first JSON object in ``text`` (a bare answer, or one inside prose or a code fence).
    Agents' answers and tenants' prompts are untrusted: only the first ``MAX_PARSE_CHARS``
    are read and at most ``MAX_PARSE_TRIES`` opening braces tried, so the cost is bounded."""
    decoder = json.JSONDecoder()
    text = text[:MAX_PARSE_CHARS]
    start = text.find("{")
    tries = 0
    while start != -1 and tries < MAX_PARSE_TRIES:
        tries += 1
        try:
            value, _ = decoder.raw_decode(text, start)
            return value
        except (json.JSONDecodeError, RecursionError):  # malformed, or nested too deep
            start = text.find("{", start + 1)
    raise ValueError("no JSON object in the answer")


def parse_verdict(text: str) -> Verdict:
    """A reviewer's answer as a verdict; anything else is a failed review with the reason."""
    try:
        data = first_json_object(text)
    except ValueError as exc:
        return Verdict(False, error=f"{exc}: {text[:120]!r}")
    if not isinstance(data, dict) or data.get("verdict") not in ("accept", "revise"):
        return Verdict(False, error=f'\'verdict\' must be "accept" or "revise": {text[:120]!r}')
    issues = data.get("issues", [])
    if not isinstance(issues, list) or not all(isinstance(i, str) for i in issues):
        return Verdict(False, error="'issues' must be a list of strings")
    summary = data.get("summary", "")
    return Verdict(
        data["verdict"] == "accept",
        [i[:500] for i in issues[:MAX_ISSUES]],
        str(summary)[:1000],
    )


def review_prompt(task_prompt: str, work: str) -> str:
    return (
        f"Review this work for the task below. Answer with only a JSON object: {VERDICT_SCHEMA}."
        f"\n\nTask:\n{task_prompt}\n\nWork:\n{work}"
    )


def revision_prompt(task_prompt: str, work: str, verdict: Verdict, number: int) -> str:
    if verdict.error:
        review = f"The review could not be read ({verdict.error}); check the work yourself."
    else:
        issues = "\n".join(f"- {i}" for i in verdict.issues) or "- (none listed)"
        review = f"Summary: {verdict.summary}\nIssues:\n{issues}"
    return (
        f"{task_prompt}\n\nRevise your previous work after review round {number}.\n"
        f"Previous work:\n{work}\n\nReview:\n{review}"
    )


async def pair_rounds(
    execution: Execution,
    prefix: str,
    prompt: str,
    capability: str,
    complexity: float,
) -> PatternResult:
    """The pair loop over any prompt; ``prefix`` names its steps (``pair`` for a session,
    ``wf/<step>`` inside a workflow)."""
    sid = execution.session.session_id
    review_capability = sibling_capability(execution, capability, "review")
    rounds: list[dict[str, Any]] = []
    ask = prompt
    for number in range(1, MAX_ROUNDS + 1):
        author = await execution.call_step(
            f"{prefix}/author/{number}",
            capability,
            ask,
            complexity=complexity,
            write_with_next=True,  # with the review step's start
        )
        review = await execution.call_step(
            f"{prefix}/review/{number}",
            review_capability,
            review_prompt(prompt, author.output),
            exclude=frozenset({author.agent_id}),
            complexity=max(0.0, complexity - 0.2),
            write_with_next=True,  # recorded with its verdict, in one transaction
            context={"expects": "review", "author_quality": author.quality},
        )
        verdict = parse_verdict(review.output)
        execution.emit(
            "ReviewRecorded",
            {
                "round": number,
                "step_id": f"{prefix}/review/{number}",
                "author_agent_id": author.agent_id,
                "reviewer_agent_id": review.agent_id,
                "verdict": verdict.label,
                "issues": verdict.issues,
                "summary": verdict.summary,
                "reason": verdict.error,
            },
            key=f"{sid}/{prefix}/review/{number}/verdict",
        )
        say(
            execution,
            f"{sid}/{prefix}/review/{number}",
            review.agent_id,
            {
                "round": number,
                "verdict": verdict.label,
                "issues": verdict.issues,
                "summary": verdict.summary,
                "reason": verdict.error,
            },
            to=author.agent_id,
        )
        rounds.append(
            {
                "round": number,
                "author": author.agent_name,
                "reviewer": review.agent_name,
                "verdict": verdict.label,
            }
        )
        if verdict.accepted:
            return PatternResult(
                output=author.output, agent_id=author.agent_id, details={"rounds": rounds}
            )
        ask = revision_prompt(prompt, author.output, verdict, number)
    raise StepError(
        f"{prefix}/review/{MAX_ROUNDS}",
        "review_rejected",
        f"not accepted after {MAX_ROUNDS} rounds",
    )


async def run_pair(execution: Execution) -> PatternResult:
    task = execution.session.task
    return await pair_rounds(execution, "pair", task.prompt, task.capability, task.complexity)
