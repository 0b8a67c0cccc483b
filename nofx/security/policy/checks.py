"""Checking a provider spec against the policy: 403 for what it denies, 422 for what is malformed."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from typing import Any

from nofx.security.policy.matchers import (
    argv_prefix_allowed,
    callable_allowed,
    executable_allowed,
    parse_callable_target,
    path_within,
    url_origin,
)
from nofx.security.policy.model import (
    ALLOW_HINT,
    ENV_NAME,
    PROVIDER_KEYS,
    ExecutableNotFoundError,
    OperatorPolicy,
    PolicyDeniedError,
    ProviderConfigError,
)
from nofx.security.policy.secret_refs import SecretRef, refuse_inline_secrets, secret_ref_allowed

ExecutableResolver = Callable[[str, str | None], str | None]


def resolve_executable(name: str, path: str | None) -> str | None:
    """argv[0] as the real absolute path that would run (symlinks resolved), or None."""
    found = shutil.which(name, path=path) if "/" not in name else name
    if found is None:
        return None
    real = os.path.realpath(found)
    return real if os.path.isfile(real) and os.access(real, os.X_OK) else None


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
