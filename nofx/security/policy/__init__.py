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

The package's modules, each importing only those before it: ``model`` (the policy, its
errors, shared constants), ``matchers`` (pure allow-list tests), ``secret_refs`` (secret
references and redaction), ``checks`` (a provider spec against the policy) and ``loading``
(the policy file and its overrides). Import from ``nofx.security.policy``.
"""

from nofx.security.policy.checks import (
    ExecutableResolver,
    check_command,
    check_openai,
    check_provider,
    check_python,
    command_argv,
    openai_secret_ref,
    resolve_executable,
)
from nofx.security.policy.loading import (
    PolicyDocument,
    apply_env_overrides,
    build_policy,
    load_policy,
    policy_from_settings,
)
from nofx.security.policy.matchers import (
    argv_prefix_allowed,
    base_url_allowed,
    callable_allowed,
    executable_allowed,
    is_loopback_host,
    module_allowed,
    normal_absolute,
    parse_callable_target,
    path_within,
    url_origin,
)
from nofx.security.policy.model import (
    ALLOW_HINT,
    DEFAULT_ENV_PASSTHROUGH,
    ENV_NAME,
    IDENTIFIER,
    LOOPBACK_NAMES,
    MAX_CONFIG_DEPTH,
    PROVIDER_KEYS,
    REDACTED,
    REFERENCE_KEYS,
    SECRET_PAIRS,
    SECRET_WORDS,
    CommandPolicy,
    ExecutableNotFoundError,
    InlineSecretError,
    OpenAIPolicy,
    OperatorPolicy,
    PolicyDeniedError,
    PolicyFileError,
    ProviderConfigError,
    PythonPolicy,
    SecretsPolicy,
    SecretValues,
)
from nofx.security.policy.secret_refs import (
    Redactor,
    SecretRef,
    inline_secret_paths,
    redact_event_payload,
    redact_spec,
    refuse_inline_secrets,
    resolve_secret,
    secret_looking_key,
    secret_ref_allowed,
)

__all__ = [
    "ALLOW_HINT",
    "DEFAULT_ENV_PASSTHROUGH",
    "ENV_NAME",
    "IDENTIFIER",
    "LOOPBACK_NAMES",
    "MAX_CONFIG_DEPTH",
    "PROVIDER_KEYS",
    "REDACTED",
    "REFERENCE_KEYS",
    "SECRET_PAIRS",
    "SECRET_WORDS",
    "CommandPolicy",
    "ExecutableNotFoundError",
    "ExecutableResolver",
    "InlineSecretError",
    "OpenAIPolicy",
    "OperatorPolicy",
    "PolicyDeniedError",
    "PolicyDocument",
    "PolicyFileError",
    "ProviderConfigError",
    "PythonPolicy",
    "Redactor",
    "SecretRef",
    "SecretValues",
    "SecretsPolicy",
    "apply_env_overrides",
    "argv_prefix_allowed",
    "base_url_allowed",
    "build_policy",
    "callable_allowed",
    "check_command",
    "check_openai",
    "check_provider",
    "check_python",
    "command_argv",
    "executable_allowed",
    "inline_secret_paths",
    "is_loopback_host",
    "load_policy",
    "module_allowed",
    "normal_absolute",
    "openai_secret_ref",
    "parse_callable_target",
    "path_within",
    "policy_from_settings",
    "redact_event_payload",
    "redact_spec",
    "refuse_inline_secrets",
    "resolve_executable",
    "resolve_secret",
    "secret_looking_key",
    "secret_ref_allowed",
    "url_origin",
]
