"""The provider set: which object performs calls for each provider kind (``nofx.agents``
re-exports it)."""

from __future__ import annotations

from nofx.agents.base import AgentProvider
from nofx.agents.simulated import SimulatedProvider
from nofx.domain import Agent, ProviderKind
from nofx.errors import ConfigurationError
from nofx.security.policy import OperatorPolicy


class ProviderSet:
    """Maps each provider kind to the object that performs calls for it."""

    def __init__(self, providers: dict[ProviderKind, AgentProvider] | None = None) -> None:
        self.providers: dict[ProviderKind, AgentProvider] = dict(providers or {})

    @classmethod
    def default(
        cls, *, seed: int = 7, time_scale: float = 1.0, policy: OperatorPolicy | None = None
    ) -> ProviderSet:
        """The simulator, plus every real provider kind, each checking every call against the
        operator policy (this process's, read on first use, unless one is given)."""
        providers: dict[ProviderKind, AgentProvider] = {
            ProviderKind.SIMULATED: SimulatedProvider(seed=seed, time_scale=time_scale)
        }
        try:
            from nofx.agents.command import CommandProvider
            from nofx.agents.openai import OpenAIProvider
            from nofx.agents.python import PythonProvider
        except ImportError:  # pragma: no cover - all ship with nofx
            pass
        else:
            providers[ProviderKind.OPENAI] = OpenAIProvider(policy=policy)
            providers[ProviderKind.COMMAND] = CommandProvider(policy=policy)
            providers[ProviderKind.PYTHON] = PythonProvider(policy=policy)
        return cls(providers)

    def for_agent(self, agent: Agent) -> AgentProvider:
        try:
            return self.providers[agent.provider.kind]
        except KeyError:
            raise ConfigurationError(
                f"no provider is configured for kind {agent.provider.kind.value!r} "
                f"(agent {agent.name})",
                hint="use one of: " + ", ".join(k.value for k in self.providers),
            ) from None
