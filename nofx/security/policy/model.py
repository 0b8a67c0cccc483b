"""The policy's shape: what the operator allows, its errors and the constants the checks share."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nofx.errors import ConfigurationError, NofxError, ValidationError

ALLOW_HINT = (
    "the operator allows it in the policy file (NOFX_POLICY_FILE, default "
    "<NOFX_HOME>/policy.yaml) or with NOFX_POLICY_{SECTION}_{KEY}, then restarts the API "
    "and the workers; see docs/security.md#operator-policy"
)
DEFAULT_ENV_PASSTHROUGH = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "USER",
    "LOGNAME",
    "TERM",
)
REDACTED = "[REDACTED]"
MAX_CONFIG_DEPTH = 32

# config keys whose values are secret references (names), not secrets
REFERENCE_KEYS = frozenset({"api_key_env", "secret_ref", "secret_env"})
SECRET_WORDS = frozenset(
    {
        "token",
        "password",
        "passwd",
        "secret",
        "authorization",
        "apikey",
        "credential",
        "credentials",
        "cookie",
        "pwd",
        "passphrase",
        "bearer",
        "privatekey",
    }
)
SECRET_PAIRS = frozenset({("api", "key"), ("private", "key"), ("access", "key")})
PROVIDER_KEYS: dict[str, frozenset[str]] = {
    "command": frozenset({"argv", "cwd", "env", "inherit_env", "timeout_s", "stdin", "secret_env"}),
    "python": frozenset({"callable", "options"}),
    "openai": frozenset(
        {
            "base_url",
            "model",
            "api_key_env",
            "secret_ref",
            "timeout_s",
            "temperature",
            "max_tokens",
            "system_prompt",
            "headers",
            "extra_headers",
        }
    ),
}
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


# -- errors ----------------------------------------------------------------------------------
class PolicyDeniedError(NofxError):
    """The operator policy does not allow this; ``policy_key`` is what the operator would set."""

    code = "policy-denied"
    http_status = 403

    def __init__(self, message: str, *, policy_key: str, hint: str | None = None) -> None:
        super().__init__(
            message,
            hint=hint or f"only the operator can allow it: add it to {policy_key}; {ALLOW_HINT}",
        )
        self.policy_key = policy_key


class ProviderConfigError(ValidationError):
    """``provider.config`` is malformed for its kind."""

    code = "invalid-provider-config"


class ExecutableNotFoundError(ProviderConfigError):
    """argv[0] names nothing that can be run here."""

    code = "executable-not-found"


class InlineSecretError(ValidationError):
    """A secret value was written into a spec instead of a reference to it."""

    code = "inline-secret"


class PolicyFileError(ConfigurationError):
    """The operator's policy file or environment overrides cannot be used."""

    code = "invalid-policy"


# -- the policy ------------------------------------------------------------------------------
@dataclass(frozen=True)
class CommandPolicy:
    """What ``command`` agents may run. Empty = no command agent at all."""

    allowed_executables: frozenset[str] = frozenset()
    allowed_argv_prefixes: tuple[tuple[str, ...], ...] = ()
    env_passthrough: tuple[str, ...] = DEFAULT_ENV_PASSTHROUGH
    allowed_env: frozenset[str] = frozenset()
    allowed_cwd_roots: tuple[str, ...] = ()
    allow_inherit_env: bool = False


@dataclass(frozen=True)
class PythonPolicy:
    """Which functions ``python`` agents may call: exact targets, or whole modules."""

    allowed_callables: frozenset[str] = frozenset()
    allowed_modules: tuple[str, ...] = ()


@dataclass(frozen=True)
class OpenAIPolicy:
    """Which origins (scheme, host, port) ``openai`` agents may call."""

    allowed_base_urls: frozenset[str] = frozenset()


class SecretValues(Mapping[str, str]):
    """The secrets file's entries; never printed, never compared by repr."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self._values = dict(values or {})

    def __getitem__(self, key: str) -> str:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"SecretValues(names={sorted(self._values)})"


@dataclass(frozen=True)
class SecretsPolicy:
    """Where secrets come from: allow-listed environment names, and an optional file."""

    allowed_env: frozenset[str] = frozenset()
    file: Path | None = None
    file_values: SecretValues = field(default_factory=SecretValues, compare=False)


@dataclass(frozen=True)
class OperatorPolicy:
    """Everything the operator allows. ``OperatorPolicy()`` denies everything but simulation."""

    command: CommandPolicy = field(default_factory=CommandPolicy)
    python: PythonPolicy = field(default_factory=PythonPolicy)
    openai: OpenAIPolicy = field(default_factory=OpenAIPolicy)
    secrets: SecretsPolicy = field(default_factory=SecretsPolicy)
    source: str = "default (deny all code-running providers and outbound hosts)"
