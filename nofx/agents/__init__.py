"""Agent providers: how a registered agent is actually called."""

from __future__ import annotations

from nofx.agents.base import (
    AgentCall,
    AgentCallError,
    AgentFaultError,
    AgentProvider,
    AgentResult,
    ErrorClass,
    PermanentAgentError,
    TransientAgentError,
)
from nofx.agents.provider_set import ProviderSet
from nofx.agents.simulated import SimulatedProvider

__all__ = [
    "AgentCall",
    "AgentCallError",
    "AgentFaultError",
    "AgentProvider",
    "AgentResult",
    "ErrorClass",
    "PermanentAgentError",
    "ProviderSet",
    "SimulatedProvider",
    "TransientAgentError",
]
