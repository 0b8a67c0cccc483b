"""Reading policy.yaml and the NOFX_POLICY_* overrides into an OperatorPolicy (the file I/O edge)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from nofx.security.policy.checks import resolve_executable
from nofx.security.policy.matchers import is_loopback_host, parse_callable_target, url_origin
from nofx.security.policy.model import (
    DEFAULT_ENV_PASSTHROUGH,
    ENV_NAME,
    IDENTIFIER,
    CommandPolicy,
    OpenAIPolicy,
    OperatorPolicy,
    PolicyFileError,
    PythonPolicy,
    SecretsPolicy,
    SecretValues,
)


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
    policy_file: Path | None = None, overrides: Mapping[str, str] | None = None
) -> OperatorPolicy:
    """Read the operator policy: the YAML file (if any) with the ``NOFX_POLICY_*``
    ``overrides`` (by name, as ``Settings.policy_overrides`` holds them).

    With neither, the result denies every code-running provider and every outbound host.
    """
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
    overridden = apply_env_overrides(document, overrides or {})
    if overridden != document:
        source += " + NOFX_POLICY_* environment overrides"
    return build_policy(overridden, source=source, base_dir=base_dir)


def policy_from_settings(env: Mapping[str, str] | None = None) -> OperatorPolicy:
    """The policy of this process's settings (``NOFX_POLICY_FILE`` / ``<NOFX_HOME>/policy.yaml``)."""
    from nofx.settings import Settings

    settings = Settings.from_env(None if env is None else dict(env))
    return load_policy(settings.policy_file, settings.policy_overrides)
