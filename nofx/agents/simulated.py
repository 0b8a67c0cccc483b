"""A seeded simulator of LLM agents: the embedded default, and ground truth for tests.

It is honest about being a simulator (every result says ``simulated=True``) and
realistic where it matters to a control plane: each agent has a hidden skill per
capability, a log-normal latency with a heavy tail, token usage that grows with
the task, a per-token price, and failure modes (agent error, timeout, rate
limit, an optional context window) plus optional degradation over time. Outcomes
depend only on the seed, the agent and the call id, so runs are reproducible
whatever the scheduling order.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
from dataclasses import dataclass

from nofx.agents.base import (
    AgentCall,
    AgentCallError,
    AgentFaultError,
    AgentResult,
    PermanentAgentError,
    TransientAgentError,
)
from nofx.domain import Agent


@dataclass(frozen=True)
class SimulatedProfile:
    """Hidden truth for one agent, read from ``provider.config`` (all optional)."""

    skill: dict[str, float]
    latency_median_ms: float = 800.0
    latency_sigma: float = 0.5
    output_ratio: float = 0.6
    error_rate: float = 0.02
    rate_limit_rate: float = 0.01
    degradation_per_call: float = 0.0
    dark_after_calls: int | None = None
    context_window_tokens: int | None = None
    latency_from_estimate: bool = False  # take exactly the caller's estimate (a workflow step's)

    @classmethod
    def from_agent(cls, agent: Agent) -> SimulatedProfile:
        config = agent.provider.config
        declared = {c.name: c.proficiency for c in agent.capabilities}
        skill = {name: 0.55 + 0.08 * level for name, level in declared.items()}
        skill.update({k: float(v) for k, v in config.get("skill", {}).items()})
        return cls(
            skill=skill,
            latency_median_ms=float(config.get("latency_median_ms", 800.0)),
            latency_sigma=float(config.get("latency_sigma", 0.5)),
            output_ratio=float(config.get("output_ratio", 0.6)),
            error_rate=float(config.get("error_rate", 0.02)),
            rate_limit_rate=float(config.get("rate_limit_rate", 0.01)),
            degradation_per_call=float(config.get("degradation_per_call", 0.0)),
            dark_after_calls=config.get("dark_after_calls"),
            context_window_tokens=config.get("context_window_tokens", agent.context_window_tokens),
            latency_from_estimate=bool(config.get("latency_from_estimate", False)),
        )


def call_rng(seed: int, agent_id: str, call_id: str) -> random.Random:
    digest = hashlib.sha256(f"{seed}|{agent_id}|{call_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def acceptance_probability(author_quality: float | None, reviewer_quality: float | None) -> float:
    """A simulated review accepts work that has no flaw (probability = the author's quality),
    or has one the reviewer misses (1 - the reviewer's quality)."""
    work = 0.8 if author_quality is None else author_quality
    reviewer = 0.8 if reviewer_quality is None else reviewer_quality
    return work + (1 - work) * (1 - reviewer)


def simulated_answer(
    agent_name: str, call: AgentCall, output_tokens: int, quality: float, rng: random.Random
) -> str:
    """What a simulated agent says, in the format the caller asked for (``context['expects']``),
    so patterns parse simulated and real answers with the same code."""
    expects = call.context.get("expects")
    if expects == "review":
        p_accept = acceptance_probability(call.context.get("author_quality"), quality)
        accepted = rng.random() < p_accept
        verdict = {
            "verdict": "accept" if accepted else "revise",
            "issues": [] if accepted else ["the change misses an edge case (simulated)"],
            "summary": f"{agent_name}: " + ("looks right" if accepted else "needs another pass"),
        }
        return json.dumps(verdict)
    if expects == "subtasks":
        count = int(call.context.get("count", 2))
        goal = str(call.context.get("goal", call.prompt))[:200]
        return json.dumps({"subtasks": [f"{goal} (part {i + 1} of {count})" for i in range(count)]})
    return f"[simulated {agent_name}] {call.capability}: done ({output_tokens} tokens)"


def success_probability(skill: float, complexity: float) -> float:
    """Harder tasks hurt weaker agents more: p = skill ** (0.5 + 1.5 * complexity)."""
    return max(0.0, min(1.0, skill)) ** (0.5 + 1.5 * complexity)


class SimulatedProvider:
    """Plays every simulated agent. ``time_scale`` shrinks real sleeping (0 = no sleep)."""

    def __init__(self, seed: int = 7, time_scale: float = 1.0) -> None:
        self.seed = seed
        self.time_scale = time_scale
        self.calls: dict[str, int] = {}
        self._profiles: dict[tuple[str, int], SimulatedProfile] = {}

    def profile(self, agent: Agent) -> SimulatedProfile:
        key = (agent.agent_id, agent.version)
        if key not in self._profiles:
            self._profiles[key] = SimulatedProfile.from_agent(agent)
        return self._profiles[key]

    def outcome(self, agent: Agent, call: AgentCall) -> AgentResult | AgentCallError:
        """Decide the call's fate without sleeping: a pure function of seed, agent and call."""
        profile = self.profile(agent)
        n = self.calls.get(agent.agent_id, 0)
        self.calls[agent.agent_id] = n + 1
        rng = call_rng(self.seed, agent.agent_id, call.call_id)
        latency = profile.latency_median_ms * math.exp(rng.gauss(0.0, profile.latency_sigma))
        latency *= 1.0 + call.complexity
        estimate = call.context.get("estimated_duration_s")
        if profile.latency_from_estimate and isinstance(estimate, int | float):
            latency = float(estimate) * 1000  # an agent that adds nothing to the plan's estimate
        input_tokens = call.input_tokens
        output_tokens = max(1, int(input_tokens * profile.output_ratio * rng.uniform(0.5, 1.5)))
        cost = agent.pricing.cost(input_tokens, output_tokens)
        if profile.dark_after_calls is not None and n >= int(profile.dark_after_calls):
            return TransientAgentError(
                f"{agent.name} did not answer within {call.timeout_s:.0f}s (simulated outage)",
                error_type="timeout",
                latency_ms=call.timeout_s * 1000,
            )
        if call.capability not in profile.skill:
            return PermanentAgentError(
                f"{agent.name} does not offer {call.capability}",
                error_type="unsupported_capability",
            )
        window = profile.context_window_tokens
        if window is not None and input_tokens > int(window):
            return PermanentAgentError(
                f"{agent.name} accepts at most {int(window)} input tokens; the call had "
                f"{input_tokens} (simulated context_length_exceeded)",
                error_type="context_length_exceeded",
            )
        roll = rng.random()
        if roll < profile.rate_limit_rate:
            return TransientAgentError(
                f"{agent.name} is rate limited (simulated HTTP 429)",
                error_type="rate_limited",
                latency_ms=latency * 0.05,
            )
        if latency > call.timeout_s * 1000:
            return TransientAgentError(
                f"{agent.name} timed out after {call.timeout_s:.1f}s",
                error_type="timeout",
                latency_ms=call.timeout_s * 1000,
                input_tokens=input_tokens,
            )
        if roll < profile.rate_limit_rate + profile.error_rate:
            return AgentFaultError(
                f"{agent.name} returned a malformed response (simulated)",
                error_type="agent_error",
                latency_ms=latency,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cost_usd=cost,
            )
        skill = profile.skill[call.capability] - profile.degradation_per_call * n
        if rng.random() >= success_probability(skill, call.complexity):
            return AgentFaultError(
                f"{agent.name} produced output that failed validation (simulated)",
                error_type="bad_output",
                latency_ms=latency,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cost_usd=cost,
            )
        quality = max(0.0, min(1.0, skill))
        return AgentResult(
            output=simulated_answer(agent.name, call, output_tokens, quality, rng),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=cost,
            latency_ms=latency,
            quality=quality,
            simulated=True,
        )

    async def invoke(self, agent: Agent, call: AgentCall) -> AgentResult:
        result = self.outcome(agent, call)
        latency = result.latency_ms
        if self.time_scale > 0:
            await asyncio.sleep(latency / 1000 * self.time_scale)
        if isinstance(result, Exception):
            raise result
        return result
