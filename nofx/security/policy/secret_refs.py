"""Secrets: references to them, whether the policy allows them, and keeping values out of specs."""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nofx.security.policy.model import (
    ALLOW_HINT,
    ENV_NAME,
    MAX_CONFIG_DEPTH,
    REDACTED,
    REFERENCE_KEYS,
    SECRET_PAIRS,
    SECRET_WORDS,
    InlineSecretError,
    PolicyDeniedError,
    ProviderConfigError,
    SecretsPolicy,
)


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
