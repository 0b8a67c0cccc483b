"""Calls any OpenAI-compatible chat completions endpoint (OpenAI, vLLM, Ollama, LiteLLM, ...).

Failures are classified for the retry policy: throttling, 503s, timeouts and
broken connections are transient (retry the same agent, after ``Retry-After``
when the server says so); other 5xx and unreadable answers are the agent's
fault (reroute); a bad request, key, permission or URL is permanent (fail fast).

Only origins the operator policy allows are called (``openai.allowed_base_urls``),
redirects are never followed, and ``Authorization`` carries only a secret the
policy allows (``api_key_env`` in ``secrets.allowed_env``, or ``secret_ref`` to the
secrets file), read at call time and never written anywhere.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from nofx.agents.base import (
    AgentCall,
    AgentFaultError,
    AgentResult,
    PermanentAgentError,
    PolicyBound,
    TransientAgentError,
    refused,
)
from nofx.domain import Agent
from nofx.errors import NofxError
from nofx.security.policy import (
    OperatorPolicy,
    Redactor,
    SecretRef,
    check_openai,
    openai_secret_ref,
    resolve_secret,
)

PERMANENT_HINTS = {
    400: "the endpoint rejected the request: check provider.config (model, max_tokens, ...)",
    401: "the API key was refused: check the key in the environment variable named by api_key_env",
    403: "the API key may not use this model: check its permissions",
    404: "nothing answers at this URL or model: check provider.config base_url and model",
}


class ThrottledAgentError(TransientAgentError):
    """A transient error for which the server said how long to wait (``retry_after_s``)."""

    def __init__(self, message: str, *, retry_after_s: float | None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class OpenAIConfig:
    """``provider.config`` of an ``openai`` agent, checked against the operator policy."""

    base_url: str
    model: str
    secret: SecretRef | None = None
    timeout_s: float = 60.0
    temperature: float | None = None
    max_tokens: int | None = None
    system_prompt: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_agent(cls, agent: Agent, policy: OperatorPolicy) -> OpenAIConfig:
        config = agent.provider.config
        try:
            check_openai(config, policy)
            secret = openai_secret_ref(config, policy)
        except NofxError as exc:
            raise refused(agent, exc) from None
        headers = {**config.get("headers", {}), **config.get("extra_headers", {})}
        return cls(
            base_url=str(config["base_url"]).rstrip("/"),
            model=str(config["model"]),
            secret=secret,
            timeout_s=float(config.get("timeout_s", 60.0)),
            temperature=None if config.get("temperature") is None else float(config["temperature"]),
            max_tokens=None if config.get("max_tokens") is None else int(config["max_tokens"]),
            system_prompt=config.get("system_prompt"),
            headers={str(k): str(v) for k, v in headers.items()},
        )

    def resolve_api_key(
        self, agent_name: str, policy: OperatorPolicy, env: Mapping[str, str]
    ) -> str | None:
        if self.secret is None:
            return None  # e.g. a local server that needs no key
        key = resolve_secret(self.secret, policy.secrets, env)
        if not key:
            where = (
                f"environment variable {self.secret.name} is not set; export the API key "
                "there before starting the runtime"
                if self.secret.source == "env"
                else f"the secrets file has no value for {self.secret.name}"
            )
            raise PermanentAgentError(f"agent {agent_name}: {where}", error_type="missing_api_key")
        return key


def parse_retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (delta seconds or HTTP date)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = lowered.get("retry-after")
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def estimate_tokens(text: str) -> int:
    """About four characters per token: the usual rule of thumb for English text."""
    return max(1, math.ceil(len(text) / 4))


def _error_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message", ""))[:200]
    return str(body)[:200]


class OpenAIProvider(PolicyBound):
    """One provider object serves every ``openai`` agent; clients are pooled per event loop."""

    def __init__(
        self,
        *,
        client: httpx.AsyncClient | None = None,
        env: Mapping[str, str] | None = None,
        policy: OperatorPolicy | None = None,
    ) -> None:
        super().__init__(policy)
        self._client = client
        self._env = env
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )

    def client(self) -> httpx.AsyncClient:
        if self._client is not None:
            return self._client
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None or client.is_closed:
            client = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=200), follow_redirects=False
            )
            self._clients[loop] = client
        return client

    async def aclose(self) -> None:
        """Close the pooled client of the running loop (an injected client is the caller's)."""
        loop = asyncio.get_running_loop()
        client = self._clients.pop(loop, None)
        if client is not None:
            await client.aclose()

    def request_body(self, config: OpenAIConfig, call: AgentCall) -> dict[str, Any]:
        messages = []
        if config.system_prompt:
            messages.append({"role": "system", "content": config.system_prompt})
        messages.append({"role": "user", "content": call.prompt})
        body: dict[str, Any] = {"model": config.model, "messages": messages}
        if config.temperature is not None:
            body["temperature"] = config.temperature
        if config.max_tokens is not None:
            body["max_tokens"] = config.max_tokens
        return body

    async def invoke(self, agent: Agent, call: AgentCall) -> AgentResult:
        policy = self.policy_for(agent)
        config = OpenAIConfig.from_agent(agent, policy)
        env = os.environ if self._env is None else self._env
        api_key = config.resolve_api_key(agent.name, policy, env)
        redact = Redactor({config.secret.name: api_key} if config.secret and api_key else {})
        headers = {"Content-Type": "application/json", **config.headers}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        url = f"{config.base_url}/chat/completions"
        timeout = min(config.timeout_s, call.timeout_s)
        started = time.perf_counter()
        try:
            response = await self.client().post(
                url,
                json=self.request_body(config, call),
                headers=headers,
                timeout=timeout,
                follow_redirects=False,  # a redirect could carry the key to another host
            )
        except httpx.TimeoutException as exc:
            raise TransientAgentError(
                f"{agent.name} did not answer within {timeout:g}s ({type(exc).__name__})",
                error_type="timeout",
                latency_ms=(time.perf_counter() - started) * 1000,
            ) from exc
        except httpx.TransportError as exc:
            raise TransientAgentError(
                f"{agent.name}: cannot reach {url} ({type(exc).__name__}: {redact(str(exc))})",
                error_type="connection_error",
                latency_ms=(time.perf_counter() - started) * 1000,
            ) from exc
        latency_ms = (time.perf_counter() - started) * 1000
        if 300 <= response.status_code < 400:
            raise PermanentAgentError(
                f"{agent.name}: HTTP {response.status_code} redirect to "
                f"{response.headers.get('location', '?')[:200]!r} was not followed; "
                "put the final URL in provider.config.base_url (the operator must allow it)",
                error_type="redirect_refused",
                latency_ms=latency_ms,
            )
        if response.status_code >= 400:
            error = self._http_error(agent, response, latency_ms)
            error.args = (redact(str(error)),)
            raise error
        result = self._result(agent, call, response, latency_ms)
        if redact:
            result = replace(result, output=redact(result.output))
        return result

    def _http_error(
        self, agent: Agent, response: httpx.Response, latency_ms: float
    ) -> TransientAgentError | AgentFaultError | PermanentAgentError:
        status = response.status_code
        detail = _error_detail(response)
        if status in (408, 429, 503):
            retry_after = parse_retry_after(response.headers)
            wait = f"; retry after {retry_after:g}s" if retry_after is not None else ""
            kind = {408: "timeout", 429: "rate_limited", 503: "service_unavailable"}[status]
            return ThrottledAgentError(
                f"{agent.name}: HTTP {status} ({kind}){wait}: {detail}",
                error_type=kind,
                retry_after_s=retry_after,
                latency_ms=latency_ms,
            )
        if status >= 500:
            return AgentFaultError(
                f"{agent.name}: HTTP {status} from the server: {detail}",
                error_type=str(status),
                latency_ms=latency_ms,
            )
        hint = PERMANENT_HINTS.get(status, "the request was refused; fix it before retrying")
        return PermanentAgentError(
            f"{agent.name}: HTTP {status}: {detail} — {hint}",
            error_type=str(status),
            latency_ms=latency_ms,
        )

    def _result(
        self, agent: Agent, call: AgentCall, response: httpx.Response, latency_ms: float
    ) -> AgentResult:
        try:
            body = response.json()
            choice = body["choices"][0]
            output = choice["message"]["content"]
            if not isinstance(output, str):
                raise TypeError("message.content is not text")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise AgentFaultError(
                f"{agent.name} answered with something that is not a chat completion "
                f"({type(exc).__name__}: {exc}): {response.text[:200]!r}",
                error_type="malformed_response",
                latency_ms=latency_ms,
            ) from exc
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        estimated = not usage or "prompt_tokens" not in usage or "completion_tokens" not in usage
        input_tokens = int(usage.get("prompt_tokens") or estimate_tokens(call.prompt))
        output_tokens = int(usage.get("completion_tokens") or estimate_tokens(output))
        return AgentResult(
            output=output,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=agent.pricing.cost(input_tokens, output_tokens),
            latency_ms=latency_ms,
            metadata={
                "gen_ai.response.model": body.get("model"),
                "gen_ai.response.id": body.get("id"),
                "gen_ai.response.finish_reasons": [choice.get("finish_reason")],
                "tokens_estimated": estimated,
            },
        )
