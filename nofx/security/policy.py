"""The operator policy: which agents may run code, reach hosts or use secrets.

Provider kinds that execute code (``command``, ``python``) or call out over HTTP
(``openai``) are the operator's decision, never a tenant's. The operator writes
``policy.yaml`` (``NOFX_POLICY_FILE``, default ``<NOFX_HOME>/policy.yaml``); the
default, with no file, denies every such kind and every secret. ``simulated``
agents are always allowed: they run no code and call nothing.

The registry checks a spec against the policy when it is registered or updated
(403 naming the policy key to set; 422 for a malformed spec or an inline secret),
and every provider checks again before each call, so an agent stored before the
policy changed cannot run either. The checks here are pure functions of the
policy and the spec; reading files and resolving executables happens at the edges
(:func:`load_policy`, :func:`resolve_executable`).
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

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


# -- pure matchers ---------------------------------------------------------------------------
def normal_absolute(path: str) -> bool:
    """An absolute path with no ``.``/``..``/empty segments (what realpath returns)."""
    if not path.startswith("/") or "\x00" in path:
        return False
    return os.path.normpath(path) == path and "//" not in path


def executable_allowed(resolved: str, allowed: Iterable[str]) -> bool:
    """Exact match of a resolved, normalised path; no prefixes, no traversal."""
    return normal_absolute(resolved) and resolved in set(allowed)


def argv_prefix_allowed(
    resolved_argv: tuple[str, ...], prefixes: Iterable[tuple[str, ...]]
) -> bool:
    """The argv (argv[0] already resolved) begins with one allowed prefix, element by element."""
    if not resolved_argv or not normal_absolute(resolved_argv[0]):
        return False
    return any(
        len(prefix) >= 1
        and len(resolved_argv) >= len(prefix)
        and tuple(resolved_argv[: len(prefix)]) == tuple(prefix)
        for prefix in prefixes
    )


def path_within(path: str, roots: Iterable[str]) -> bool:
    """``path`` is one of ``roots`` or below it, compared segment by segment."""
    if not normal_absolute(path):
        return False
    parts = PurePosixPath(path).parts
    for root in roots:
        if not normal_absolute(root):
            continue
        root_parts = PurePosixPath(root).parts
        if parts[: len(root_parts)] == root_parts:
            return True
    return False


def module_allowed(module: str, prefixes: Iterable[str]) -> bool:
    """``module`` is an allowed module or a submodule of one (``a.b`` allows ``a.b.c``, not ``a.bc``)."""
    return any(module == p or module.startswith(p + ".") for p in prefixes if p)


def parse_callable_target(target: object) -> tuple[str, str] | None:
    """``"pkg.mod:Qual.name"`` -> (module, qualname); None unless every part is an identifier."""
    if not isinstance(target, str) or target.count(":") != 1:
        return None
    module, qualname = target.split(":")
    if not all(IDENTIFIER.match(p) for p in module.split(".")):
        return None
    if not all(IDENTIFIER.match(p) for p in qualname.split(".")):
        return None
    return module, qualname


def callable_allowed(target: str, policy: PythonPolicy) -> bool:
    """Exactly listed, or inside an allowed module with no private (``_``) part on the way."""
    parsed = parse_callable_target(target)
    if parsed is None:
        return False
    if target in policy.allowed_callables:
        return True
    module, qualname = parsed
    if any(p.startswith("_") for p in qualname.split(".")):
        return False
    return module_allowed(module, policy.allowed_modules)


def is_loopback_host(host: str) -> bool:
    host = host.lower().rstrip(".")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_origin(url: object) -> str | None:
    """``scheme://host:port`` with the default port filled in; None for anything unusable."""
    if not isinstance(url, str) or len(url) > 2048 or any(c.isspace() for c in url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if scheme not in ("http", "https") or not host or parts.username or parts.password:
        return None
    if "@" in parts.netloc:
        return None
    port = port or (443 if scheme == "https" else 80)
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


def base_url_allowed(base_url: object, policy: OpenAIPolicy) -> bool:
    origin = url_origin(base_url)
    return origin is not None and origin in policy.allowed_base_urls


@functools.lru_cache(maxsize=4096)
def secret_looking_key(key: str) -> bool:
    """``api_key``, ``apiKey``, ``X-Api-Key``, ``GITHUB_TOKEN``, ``Authorization``... but not
    ``max_tokens`` or the reference keys ``api_key_env`` / ``secret_ref`` / ``secret_env``."""
    if key.lower() in REFERENCE_KEYS:
        return False
    snake = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key).lower()
    words = [w for w in re.split(r"[^a-z0-9]+", snake) if w]
    if any(w in SECRET_WORDS for w in words):
        return True
    return any(pair in SECRET_PAIRS for pair in itertools.pairwise(words))


@dataclass(frozen=True)
class SecretRef:
    """A reference to a secret: ``env:NAME`` (an allowed environment variable) or
    ``file:NAME`` / ``NAME`` (an entry of the operator's secrets file)."""

    source: str  # "env" | "file"
    name: str

    @classmethod
    def parse(cls, raw: object) -> SecretRef | None:
        if not isinstance(raw, str) or not raw:
            return None
        source, _, name = raw.partition(":") if ":" in raw else ("file", ":", raw)
        if source not in ("env", "file") or not ENV_NAME.match(name or ""):
            return None
        return cls(source, name)

    def __str__(self) -> str:
        return f"{self.source}:{self.name}"


def secret_ref_allowed(ref: SecretRef, policy: SecretsPolicy) -> PolicyDeniedError | None:
    if ref.source == "env":
        if ref.name in policy.allowed_env:
            return None
        return PolicyDeniedError(
            f"environment variable {ref.name} is not a secret the operator allows agents to use",
            policy_key="secrets.allowed_env",
        )
    if policy.file is not None and ref.name in policy.file_values:
        return None
    return PolicyDeniedError(
        f"the operator's secrets file has no secret named {ref.name!r}",
        policy_key="secrets.file",
        hint=(
            f"the operator adds {ref.name}: <value> to the file named by secrets.file; {ALLOW_HINT}"
        ),
    )


def resolve_secret(ref: SecretRef, policy: SecretsPolicy, env: Mapping[str, str]) -> str | None:
    """The value, or None when it is not set (the caller decides what that means)."""
    if secret_ref_allowed(ref, policy) is not None:
        return None
    if ref.source == "env":
        return env.get(ref.name) or None
    return policy.file_values.get(ref.name) or None


# -- inline secrets: refusal and redaction ---------------------------------------------------
def _walk_secret_keys(value: Any, path: str, depth: int, out: list[str], recursive: bool) -> None:
    if depth > MAX_CONFIG_DEPTH:
        raise ProviderConfigError(
            f"{path} is nested more than {MAX_CONFIG_DEPTH} levels deep",
            hint="flatten provider.config",
        )
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}"
            if str(key).lower() in REFERENCE_KEYS:
                continue
            if secret_looking_key(str(key)):
                out.append(here)
            elif recursive:
                _walk_secret_keys(item, here, depth + 1, out, recursive)
    elif isinstance(value, list) and recursive:
        for i, item in enumerate(value):
            _walk_secret_keys(item, f"{path}[{i}]", depth + 1, out, recursive)


def inline_secret_paths(kind: str, config: Mapping[str, Any]) -> list[str]:
    """Where a spec holds what looks like a secret value. Simulated agents: top level only
    (their ``skill`` map is keyed by capability names, which may contain 'token')."""
    out: list[str] = []
    _walk_secret_keys(dict(config), "provider.config", 0, out, recursive=kind != "simulated")
    return out


def _holds_secret(value: Any, depth: int, recursive: bool) -> bool:
    if depth > MAX_CONFIG_DEPTH:
        return True  # too deep to have been accepted: redact it
    if isinstance(value, dict):
        for key, item in value.items():
            name = str(key)
            if name.lower() in REFERENCE_KEYS:
                continue
            if secret_looking_key(name):
                return True
            if recursive and isinstance(item, dict | list) and _holds_secret(item, depth + 1, True):
                return True
    elif isinstance(value, list) and recursive:
        return any(_holds_secret(item, depth + 1, True) for item in value)
    return False


def _redact(value: Any, depth: int, recursive: bool) -> Any:
    if depth > MAX_CONFIG_DEPTH:
        return REDACTED
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if str(key).lower() in REFERENCE_KEYS:
                out[key] = item
            elif secret_looking_key(str(key)):
                out[key] = REDACTED
            else:
                out[key] = _redact(item, depth + 1, recursive) if recursive else item
        return out
    if isinstance(value, list) and recursive:
        return [_redact(item, depth + 1, recursive) for item in value]
    return value


def redact_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A stored spec (dict) with every inline secret value replaced by ``[REDACTED]``."""
    provider = spec.get("provider")
    if not isinstance(provider, dict) or not isinstance(provider.get("config"), dict):
        return dict(spec)
    kind = str(provider.get("kind", "simulated"))
    recursive = kind != "simulated"
    if not _holds_secret(provider["config"], 0, recursive):
        return dict(spec)  # the usual case: nothing to hide, nothing copied
    config = _redact(provider["config"], 0, recursive=recursive)
    return {**spec, "provider": {**provider, "config": config}}


def redact_event_payload(event_type: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """``AgentRegistered``/``AgentUpdated`` payloads with their spec redacted (old events may
    hold inline keys written before they were refused)."""
    if event_type in ("AgentRegistered", "AgentUpdated") and isinstance(payload.get("spec"), dict):
        return {**payload, "spec": redact_spec(payload["spec"])}
    return dict(payload)


class Redactor:
    """Replaces each secret value a provider handed out with ``[REDACTED:<name>]``."""

    def __init__(self, secrets: Mapping[str, str] | None = None) -> None:
        # longest first, so a secret that contains another is replaced whole
        self._pairs = sorted(
            ((value, name) for name, value in (secrets or {}).items() if value),
            key=lambda p: -len(p[0]),
        )

    def __bool__(self) -> bool:
        return bool(self._pairs)

    def __call__(self, text: str) -> str:
        for value, name in self._pairs:
            if value in text:
                text = text.replace(value, f"[REDACTED:{name}]")
        return text


# -- checking a provider spec ----------------------------------------------------------------
ExecutableResolver = Callable[[str, str | None], str | None]


def resolve_executable(name: str, path: str | None) -> str | None:
    """argv[0] as the real absolute path that would run (symlinks resolved), or None."""
    found = shutil.which(name, path=path) if "/" not in name else name
    if found is None:
        return None
    real = os.path.realpath(found)
    return real if os.path.isfile(real) and os.access(real, os.X_OK) else None


def refuse_inline_secrets(kind: str, config: Mapping[str, Any]) -> None:
    """422 when a spec carries a secret value instead of a reference to one."""
    paths = inline_secret_paths(kind, config)
    if paths:
        raise InlineSecretError(
            f"{', '.join(paths)} looks like a secret written into the spec; secrets are "
            "never stored with an agent",
            hint=(
                "reference it instead: openai agents use api_key_env: NAME or secret_ref: "
                "'file:NAME'; command agents use secret_env: {VAR: 'env:NAME'}; the operator "
                "allows the names in secrets.allowed_env / secrets.file"
            ),
        )


def _safe_text(value: object, limit: int) -> bool:
    """A string a process or an HTTP header can carry: no NUL, CR or LF, bounded."""
    return (
        isinstance(value, str) and len(value) <= limit and not any(c in value for c in "\x00\r\n")
    )


def _string_map(config: Mapping[str, Any], key: str) -> dict[str, str]:
    value = config.get(key, {})
    if (
        not isinstance(value, dict)
        or len(value) > 256
        or not all(_safe_text(k, 256) and k and _safe_text(v, 32_768) for k, v in value.items())
    ):
        raise ProviderConfigError(
            f"provider.config.{key} must map names to strings (no NUL, CR or LF), "
            "e.g. {FLAVOUR: mint}"
        )
    return dict(value)


def _check_unknown_keys(kind: str, config: Mapping[str, Any]) -> None:
    unknown = sorted(set(config) - PROVIDER_KEYS[kind])
    if unknown:
        raise ProviderConfigError(
            f"unknown provider.config keys for kind {kind!r}: {', '.join(map(str, unknown))}",
            hint=f"use only {', '.join(sorted(PROVIDER_KEYS[kind]))}",
        )


def _check_timeout(config: Mapping[str, Any]) -> None:
    timeout = config.get("timeout_s")
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout <= 86_400
    ):
        raise ProviderConfigError(
            "provider.config.timeout_s must be a number of seconds in (0, 86400]"
        )


def command_argv(config: Mapping[str, Any]) -> list[str]:
    argv = config.get("argv")
    if (
        not isinstance(argv, list)
        or not argv
        or len(argv) > 256
        or not all(isinstance(a, str) and a and "\x00" not in a for a in argv)
    ):
        raise ProviderConfigError(
            "provider.config.argv must be a non-empty list of non-empty strings, "
            "e.g. ['/usr/local/bin/my-agent', '--quiet']"
        )
    return list(argv)


def check_command(
    config: Mapping[str, Any],
    policy: OperatorPolicy,
    *,
    path: str | None,
    resolve: ExecutableResolver = resolve_executable,
) -> tuple[str, ...]:
    """Check a ``command`` config; returns argv with argv[0] resolved to what will run."""
    refuse_inline_secrets("command", config)
    _check_unknown_keys("command", config)
    _check_timeout(config)
    argv = command_argv(config)
    env = _string_map(config, "env")
    secret_env = _string_map(config, "secret_env")
    stdin = config.get("stdin", "prompt")
    if stdin not in ("prompt", "json", "none"):
        raise ProviderConfigError(
            f"provider.config.stdin is {stdin!r}; use one of prompt, json, none"
        )
    rules = policy.command
    if not rules.allowed_executables and not rules.allowed_argv_prefixes:
        raise PolicyDeniedError(
            f"the operator policy allows no command agents, so not {argv[0]!r}",
            policy_key="command.allowed_executables",
            hint=(
                "only the operator can allow it: add the executable's real path to "
                "command.allowed_executables, or an argv prefix to "
                f"command.allowed_argv_prefixes; {ALLOW_HINT}"
            ),
        )
    resolved = resolve(argv[0], path)
    if resolved is None and argv[0].startswith("/"):
        resolved = os.path.normpath(argv[0])  # may exist only where the workers run
    if resolved is None:
        raise ExecutableNotFoundError(
            f"executable {argv[0]!r} was not found (or is not executable) on the PATH",
            hint="install it, or put its full path in provider.config.argv[0]",
        )
    full = (resolved, *argv[1:])
    if not (
        executable_allowed(resolved, rules.allowed_executables)
        or argv_prefix_allowed(full, rules.allowed_argv_prefixes)
    ):
        raise PolicyDeniedError(
            f"the operator policy does not allow command agents to run {resolved} "
            f"(argv[0] {argv[0]!r})",
            policy_key="command.allowed_executables",
            hint=(
                f"only the operator can allow it: add {resolved} to "
                "command.allowed_executables, or an argv prefix starting with it to "
                f"command.allowed_argv_prefixes; {ALLOW_HINT}"
            ),
        )
    cwd = config.get("cwd")
    if cwd is not None:
        if not _safe_text(cwd, 4096) or not cwd.startswith("/"):
            raise ProviderConfigError("provider.config.cwd must be an absolute path")
        if not path_within(os.path.realpath(cwd), rules.allowed_cwd_roots):
            raise PolicyDeniedError(
                f"the operator policy does not allow command agents to work in {cwd}",
                policy_key="command.allowed_cwd_roots",
            )
    if config.get("inherit_env") and not rules.allow_inherit_env:
        raise PolicyDeniedError(
            "command agents may not inherit the worker's whole environment",
            policy_key="command.allow_inherit_env",
            hint=(
                "drop inherit_env (the agent gets command.env_passthrough plus its secret_env), "
                f"or the operator sets command.allow_inherit_env: true; {ALLOW_HINT}"
            ),
        )
    for name in env:
        if not ENV_NAME.match(name):
            raise ProviderConfigError(f"provider.config.env name {name!r} is not a variable name")
        if name not in rules.allowed_env:
            raise PolicyDeniedError(
                f"command agents may not set the environment variable {name}",
                policy_key="command.allowed_env",
            )
    for name, raw in secret_env.items():
        if not ENV_NAME.match(name):
            raise ProviderConfigError(
                f"provider.config.secret_env name {name!r} is not a variable name"
            )
        _check_secret_ref(raw, f"provider.config.secret_env.{name}", policy)
    return full


def _check_secret_ref(raw: object, where: str, policy: OperatorPolicy) -> SecretRef:
    ref = SecretRef.parse(raw)
    if ref is None:
        raise ProviderConfigError(
            f"{where} must be a secret reference 'env:NAME' or 'file:NAME', got {raw!r}"
        )
    denied = secret_ref_allowed(ref, policy.secrets)
    if denied is not None:
        raise denied
    return ref


def check_python(config: Mapping[str, Any], policy: OperatorPolicy) -> str:
    refuse_inline_secrets("python", config)
    _check_unknown_keys("python", config)
    target = config.get("callable")
    if parse_callable_target(target) is None:
        raise ProviderConfigError(
            f"provider.config.callable must look like 'package.module:function', got {target!r}"
        )
    if not isinstance(config.get("options", {}), dict):
        raise ProviderConfigError("provider.config.options must be a mapping")
    assert isinstance(target, str)
    if not callable_allowed(target, policy.python):
        raise PolicyDeniedError(
            f"the operator policy does not allow python agents to call {target}",
            policy_key="python.allowed_callables",
            hint=(
                f"only the operator can allow it: add {target!r} to python.allowed_callables "
                f"(or its module to python.allowed_modules); {ALLOW_HINT}"
            ),
        )
    return target


def openai_secret_ref(config: Mapping[str, Any], policy: OperatorPolicy) -> SecretRef | None:
    key_env = config.get("api_key_env")
    ref = config.get("secret_ref")
    if key_env is not None and ref is not None:
        raise ProviderConfigError("give api_key_env or secret_ref, not both")
    if key_env is not None:
        if not isinstance(key_env, str) or not ENV_NAME.match(key_env):
            raise ProviderConfigError(
                f"provider.config.api_key_env must be an environment variable name, got {key_env!r}"
            )
        return _check_secret_ref(f"env:{key_env}", "provider.config.api_key_env", policy)
    if ref is not None:
        return _check_secret_ref(ref, "provider.config.secret_ref", policy)
    return None


def check_openai(config: Mapping[str, Any], policy: OperatorPolicy) -> str:
    """Check an ``openai`` config; returns the origin it will call."""
    refuse_inline_secrets("openai", config)
    _check_unknown_keys("openai", config)
    _check_timeout(config)
    base_url, model = config.get("base_url"), config.get("model")
    if not isinstance(model, str) or not model:
        raise ProviderConfigError("provider.config.model must be a model name, e.g. 'gpt-4o-mini'")
    origin = url_origin(base_url)
    if origin is None:
        raise ProviderConfigError(
            f"provider.config.base_url must be an http(s) URL with a host and no user info, "
            f"got {base_url!r}"
        )
    for key in ("headers", "extra_headers"):
        _string_map(config, key)
    if origin not in policy.openai.allowed_base_urls:
        raise PolicyDeniedError(
            f"the operator policy does not allow openai agents to call {origin}",
            policy_key="openai.allowed_base_urls",
            hint=(
                f"only the operator can allow it: add {origin} to openai.allowed_base_urls "
                f"(https, or http for a loopback host); {ALLOW_HINT}"
            ),
        )
    openai_secret_ref(config, policy)
    return origin


def check_provider(
    kind: str,
    config: Mapping[str, Any],
    policy: OperatorPolicy,
    *,
    path: str | None = None,
    resolve: ExecutableResolver = resolve_executable,
) -> None:
    """Refuse what the policy does not allow (403) or what is malformed (422)."""
    if not isinstance(config, Mapping):
        raise ProviderConfigError("provider.config must be a mapping")
    refuse_inline_secrets(kind, config)
    if kind == "simulated":
        return
    if kind == "command":
        check_command(config, policy, path=path, resolve=resolve)
    elif kind == "python":
        check_python(config, policy)
    elif kind == "openai":
        check_openai(config, policy)
    else:
        raise ProviderConfigError(f"unknown provider kind {kind!r}")


# -- loading ---------------------------------------------------------------------------------
class _CommandFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    allowed_executables: list[str] = Field(default_factory=list)
    allowed_argv_prefixes: list[list[str]] = Field(default_factory=list)
    env_passthrough: list[str] = Field(default_factory=lambda: list(DEFAULT_ENV_PASSTHROUGH))
    allowed_env: list[str] = Field(default_factory=list)
    allowed_cwd_roots: list[str] = Field(default_factory=list)
    allow_inherit_env: bool = False


class _PythonFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    allowed_callables: list[str] = Field(default_factory=list)
    allowed_modules: list[str] = Field(default_factory=list)


class _OpenAIFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    allowed_base_urls: list[str] = Field(default_factory=list)


class _SecretsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    allowed_env: list[str] = Field(default_factory=list)
    file: str | None = None


class PolicyDocument(BaseModel):
    """The shape of ``policy.yaml``; unknown keys are an error so a typo never widens access."""

    model_config = ConfigDict(extra="forbid")
    command: _CommandFile = Field(default_factory=_CommandFile)
    python: _PythonFile = Field(default_factory=_PythonFile)
    openai: _OpenAIFile = Field(default_factory=_OpenAIFile)
    secrets: _SecretsFile = Field(default_factory=_SecretsFile)


def _env_override(raw: str) -> Any:
    """``[...]`` is JSON; ``true``/``false`` a flag; anything else a comma-separated list."""
    text = raw.strip()
    if text.startswith("["):
        return json.loads(text)
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return [item.strip() for item in text.split(",") if item.strip()]


def apply_env_overrides(document: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """``NOFX_POLICY_<SECTION>_<KEY>`` replaces ``<section>.<key>`` of the file."""
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in document.items()}
    for section, model in (
        ("command", _CommandFile),
        ("python", _PythonFile),
        ("openai", _OpenAIFile),
        ("secrets", _SecretsFile),
    ):
        for key in model.model_fields:
            name = f"NOFX_POLICY_{section.upper()}_{key.upper()}"
            if name not in env:
                continue
            try:
                value: Any = env[name] if key == "file" else _env_override(env[name])
            except json.JSONDecodeError as exc:
                raise PolicyFileError(f"{name} is not valid JSON: {exc}") from None
            target = merged.setdefault(section, {})
            if not isinstance(target, dict):
                raise PolicyFileError(f"policy section {section!r} must be a mapping")
            target[key] = value
    return merged


def _executable_entry(entry: str) -> str:
    """An allowed executable as the real path that would run; names are looked up on PATH."""
    resolved = resolve_executable(entry, None)
    if resolved is not None:
        return resolved
    if entry.startswith("/"):
        return os.path.normpath(entry)
    raise PolicyFileError(
        f"command executable {entry!r} in the policy is not found on PATH",
        hint="write its absolute path, or install it before starting NOFX",
    )


def _origin_entry(entry: str) -> str:
    origin = url_origin(entry)
    if origin is None:
        raise PolicyFileError(f"openai.allowed_base_urls entry {entry!r} is not an http(s) URL")
    if origin.startswith("http://"):
        host = urlsplit(origin).hostname or ""
        if not is_loopback_host(host):
            raise PolicyFileError(
                f"openai.allowed_base_urls entry {entry!r} is plain http to a non-loopback host",
                hint="use https; plain http is allowed only for 127.0.0.1, ::1 or localhost",
            )
    return origin


def _read_secrets_file(path: Path) -> SecretValues:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyFileError(f"cannot read the secrets file {path}: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and ENV_NAME.match(k) and isinstance(v, str) for k, v in data.items()
    ):
        raise PolicyFileError(
            f"the secrets file {path} must map names (letters, digits, _) to string values"
        )
    return SecretValues(data)


def build_policy(document: Mapping[str, Any], *, source: str, base_dir: Path) -> OperatorPolicy:
    """Validate a policy document (file + overrides) and resolve it into an OperatorPolicy."""
    try:
        doc = PolicyDocument.model_validate(dict(document))
    except PydanticValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise PolicyFileError(
            f"the operator policy ({source}) is not valid: {problems}",
            hint="see docs/security.md#operator-policy for the keys",
        ) from None
    for name in [*doc.secrets.allowed_env, *doc.command.env_passthrough, *doc.command.allowed_env]:
        if not ENV_NAME.match(name):
            raise PolicyFileError(f"{name!r} in the operator policy is not a variable name")
    for target in doc.python.allowed_callables:
        if parse_callable_target(target) is None:
            raise PolicyFileError(
                f"python.allowed_callables entry {target!r} must look like 'package.module:function'"
            )
    for module in doc.python.allowed_modules:
        if not all(IDENTIFIER.match(p) for p in module.split(".")):
            raise PolicyFileError(f"python.allowed_modules entry {module!r} is not a module name")
    prefixes = []
    for prefix in doc.command.allowed_argv_prefixes:
        if not prefix:
            raise PolicyFileError(
                "an empty command.allowed_argv_prefixes entry would allow anything"
            )
        prefixes.append((_executable_entry(prefix[0]), *prefix[1:]))
    roots = []
    for root in doc.command.allowed_cwd_roots:
        if not root.startswith("/"):
            raise PolicyFileError(f"command.allowed_cwd_roots entry {root!r} must be absolute")
        roots.append(os.path.realpath(root))
    secrets_file: Path | None = None
    values = SecretValues()
    if doc.secrets.file:
        secrets_file = Path(doc.secrets.file).expanduser()
        if not secrets_file.is_absolute():
            secrets_file = base_dir / secrets_file
        values = _read_secrets_file(secrets_file)
    return OperatorPolicy(
        command=CommandPolicy(
            allowed_executables=frozenset(
                _executable_entry(e) for e in doc.command.allowed_executables
            ),
            allowed_argv_prefixes=tuple(prefixes),
            env_passthrough=tuple(doc.command.env_passthrough),
            allowed_env=frozenset(doc.command.allowed_env),
            allowed_cwd_roots=tuple(roots),
            allow_inherit_env=doc.command.allow_inherit_env,
        ),
        python=PythonPolicy(
            allowed_callables=frozenset(doc.python.allowed_callables),
            allowed_modules=tuple(doc.python.allowed_modules),
        ),
        openai=OpenAIPolicy(
            allowed_base_urls=frozenset(_origin_entry(u) for u in doc.openai.allowed_base_urls)
        ),
        secrets=SecretsPolicy(
            allowed_env=frozenset(doc.secrets.allowed_env), file=secrets_file, file_values=values
        ),
        source=source,
    )


def load_policy(
    policy_file: Path | None = None, env: Mapping[str, str] | None = None
) -> OperatorPolicy:
    """Read the operator policy: the YAML file (if any) with ``NOFX_POLICY_*`` overrides.

    With neither, the result denies every code-running provider and every outbound host.
    """
    env = os.environ if env is None else env
    document: dict[str, Any] = {}
    source = "default (deny all code-running providers and outbound hosts)"
    base_dir = Path.cwd()
    if policy_file is not None:
        try:
            loaded = yaml.safe_load(policy_file.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise PolicyFileError(
                f"cannot read the operator policy {policy_file}: {exc}",
                hint="fix the file, or unset NOFX_POLICY_FILE to use the deny-all default",
            ) from None
        if loaded is not None and not isinstance(loaded, dict):
            raise PolicyFileError(f"the operator policy {policy_file} must be a YAML mapping")
        document = loaded or {}
        source = str(policy_file)
        base_dir = policy_file.parent
    overridden = apply_env_overrides(document, env)
    if overridden != document:
        source += " + NOFX_POLICY_* environment overrides"
    return build_policy(overridden, source=source, base_dir=base_dir)


def policy_from_settings(env: Mapping[str, str] | None = None) -> OperatorPolicy:
    """The policy of this process's settings (``NOFX_POLICY_FILE`` / ``<NOFX_HOME>/policy.yaml``)."""
    from nofx.settings import Settings

    env = dict(os.environ if env is None else env)
    return load_policy(Settings.from_env(env).policy_file, env)
