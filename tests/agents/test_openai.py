"""OpenAIProvider against a real HTTP server on 127.0.0.1 that speaks chat completions.

The server's behaviour is chosen by the ``model`` in the request, so one server
covers success, throttling, server errors, bad keys, slowness, garbage and
redirects. Every provider runs under an explicit operator policy that allows
that server's origin and the ``TEST_KEY`` variable.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from nofx.agents import AgentFaultError, PermanentAgentError, TransientAgentError
from nofx.agents.base import AgentCall, ErrorClass
from nofx.agents.openai import OpenAIProvider, ThrottledAgentError, parse_retry_after
from nofx.domain import Agent, AgentSpec, SessionRequest, SessionStatus, Task, utcnow
from nofx.registry import AgentRegistry
from nofx.runtime import Runtime, RuntimeConfig
from nofx.security.policy import (
    OpenAIPolicy,
    OperatorPolicy,
    SecretsPolicy,
    SecretValues,
    url_origin,
)
from nofx.store import EventStore

API_KEY = "sk-test-not-a-real-key"


class ChatHandler(BaseHTTPRequestHandler):
    """Answers POST /v1/chat/completions according to the requested model."""

    requests: list[dict] = []

    def log_message(self, *args: object) -> None:  # keep test output clean
        return None

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        # the client may have given up waiting, as the timeout test intends
        with contextlib.suppress(BrokenPipeError):
            self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length))
        self.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        if self.path != "/v1/chat/completions":
            self._send(404, json.dumps({"error": {"message": "no such route"}}).encode())
            return
        if self.headers.get("Authorization") != f"Bearer {API_KEY}":
            self._send(401, json.dumps({"error": {"message": "Incorrect API key"}}).encode())
            return
        model = body["model"]
        prompt = body["messages"][-1]["content"]
        if model == "redirect":
            target = body["messages"][0]["content"] if len(body["messages"]) > 1 else "/"
            self._send(307, b"{}", {"Location": target})
        elif model == "echo-key":
            content = f"your header was {self.headers.get('Authorization')}"
            choice = {"index": 0, "message": {"role": "assistant", "content": content}}
            self._send(200, json.dumps({"choices": [choice]}).encode())
        elif model == "echo-key-error":
            detail = {"error": {"message": f"bad {self.headers.get('Authorization')}"}}
            self._send(400, json.dumps(detail).encode())
        elif model == "throttled":
            error = {"error": {"message": "Rate limit reached", "type": "rate_limit"}}
            self._send(429, json.dumps(error).encode(), {"Retry-After": "7"})
        elif model == "overloaded":
            self._send(503, b'{"error": {"message": "overloaded"}}', {"retry-after-ms": "1500"})
        elif model == "broken":
            self._send(500, b'{"error": {"message": "internal error"}}')
        elif model == "picky":
            self._send(400, b'{"error": {"message": "max_tokens is too large"}}')
        elif model == "slow":
            time.sleep(1.5)
            self._send(200, b"{}")
        elif model == "garbage":
            self._send(200, b"<html>this is not json</html>")
        elif model == "wrong-shape":
            self._send(200, json.dumps({"choices": []}).encode())
        else:
            completion = {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": f"echo: {prompt}"},
                        "finish_reason": "stop",
                    }
                ],
            }
            if model != "no-usage":
                completion["usage"] = {"prompt_tokens": 120, "completion_tokens": 30}
            self._send(200, json.dumps(completion).encode())


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), ChatHandler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def make_agent(base_url: str, model: str = "gpt-test", **config: object) -> Agent:
    now = utcnow()
    return Agent(
        agent_id="agt_openai",
        name="remote",
        capabilities=[{"name": "code.generate", "proficiency": 4}],
        provider={
            "kind": "openai",
            "config": {"base_url": base_url, "model": model, "api_key_env": "TEST_KEY", **config},
        },
        pricing={"input_per_1k_tokens": 0.01, "output_per_1k_tokens": 0.03},
        created_at=now,
        updated_at=now,
    )


def call(prompt: str = "write a parser", timeout_s: float = 10.0) -> AgentCall:
    return AgentCall(
        call_id="c1",
        capability="code.generate",
        prompt=prompt,
        input_tokens=100,
        timeout_s=timeout_s,
    )


def policy(*urls: str, secrets: dict[str, str] | None = None) -> OperatorPolicy:
    return OperatorPolicy(
        openai=OpenAIPolicy(allowed_base_urls=frozenset(url_origin(u) for u in urls)),  # type: ignore[misc]
        secrets=SecretsPolicy(
            allowed_env=frozenset({"TEST_KEY"}),
            file=Path("/etc/nofx/secrets.yaml") if secrets else None,
            file_values=SecretValues(secrets),
        ),
    )


@pytest.fixture
def provider(server: str) -> OpenAIProvider:
    return OpenAIProvider(env={"TEST_KEY": API_KEY}, policy=policy(server))


async def test_success_reads_output_usage_and_prices_it(server: str, provider: OpenAIProvider):
    agent = make_agent(server, temperature=0.2, max_tokens=64, headers={"X-Team": "nofx"})
    ChatHandler.requests.clear()
    result = await provider.invoke(agent, call("hello"))
    assert result.output == "echo: hello"
    assert (result.input_tokens, result.output_tokens) == (120, 30)
    assert result.cost_usd == pytest.approx(120 / 1000 * 0.01 + 30 / 1000 * 0.03)
    assert result.latency_ms > 0 and not result.simulated
    assert result.metadata["tokens_estimated"] is False
    assert result.metadata["gen_ai.response.finish_reasons"] == ["stop"]
    sent = ChatHandler.requests[-1]
    assert sent["body"]["temperature"] == 0.2 and sent["body"]["max_tokens"] == 64
    assert sent["headers"]["X-Team"] == "nofx"
    await provider.aclose()


async def test_system_prompt_and_missing_usage_is_estimated(server: str, provider: OpenAIProvider):
    agent = make_agent(server, model="no-usage", system_prompt="be terse")
    ChatHandler.requests.clear()
    result = await provider.invoke(agent, call("x" * 400))
    assert result.metadata["tokens_estimated"] is True
    assert result.input_tokens == 100
    messages = ChatHandler.requests[-1]["body"]["messages"]
    assert messages[0] == {"role": "system", "content": "be terse"}


async def test_429_is_transient_and_carries_retry_after(server: str, provider: OpenAIProvider):
    with pytest.raises(ThrottledAgentError) as caught:
        await provider.invoke(make_agent(server, model="throttled"), call())
    assert caught.value.error_class is ErrorClass.TRANSIENT
    assert caught.value.error_type == "rate_limited"
    assert caught.value.retry_after_s == 7
    assert "retry after 7s" in str(caught.value) and "Rate limit reached" in str(caught.value)


async def test_503_is_transient_with_millisecond_retry_after(server: str, provider):
    with pytest.raises(ThrottledAgentError) as caught:
        await provider.invoke(make_agent(server, model="overloaded"), call())
    assert caught.value.error_type == "service_unavailable"
    assert caught.value.retry_after_s == 1.5


async def test_500_is_the_agents_fault(server: str, provider: OpenAIProvider):
    with pytest.raises(AgentFaultError) as caught:
        await provider.invoke(make_agent(server, model="broken"), call())
    assert caught.value.error_type == "500"
    assert "internal error" in str(caught.value)


@pytest.mark.parametrize(
    ("env", "path", "model", "status"),
    [
        ({"TEST_KEY": "sk-wrong"}, "", "gpt-test", "401"),
        ({"TEST_KEY": API_KEY}, "/nowhere", "gpt-test", "404"),
        ({"TEST_KEY": API_KEY}, "", "picky", "400"),
    ],
)
async def test_client_errors_are_permanent(server: str, env, path, model, status):
    provider = OpenAIProvider(env=env, policy=policy(server))
    with pytest.raises(PermanentAgentError) as caught:
        await provider.invoke(make_agent(server + path, model=model), call())
    assert caught.value.error_type == status
    if status == "401":
        assert "api_key_env" in str(caught.value)


async def test_missing_key_env_is_permanent_and_names_the_variable(server: str):
    with pytest.raises(PermanentAgentError, match="TEST_KEY is not set") as caught:
        await OpenAIProvider(env={}, policy=policy(server)).invoke(make_agent(server), call())
    assert caught.value.error_type == "missing_api_key"


async def test_a_literal_key_in_a_stored_spec_is_never_sent(server: str):
    before = len(ChatHandler.requests)
    agent = make_agent(server, api_key=API_KEY, api_key_env=None)
    with pytest.raises(PermanentAgentError, match="api_key_env") as caught:
        await OpenAIProvider(env={}, policy=policy(server)).invoke(agent, call("hi"))
    assert caught.value.error_type == "policy_denied"
    assert len(ChatHandler.requests) == before


async def test_timeout_is_transient(server: str, provider: OpenAIProvider):
    started = time.perf_counter()
    with pytest.raises(TransientAgentError) as caught:
        await provider.invoke(make_agent(server, model="slow", timeout_s=0.3), call())
    assert caught.value.error_type == "timeout"
    assert time.perf_counter() - started < 1.4


async def test_connection_refused_is_transient():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    provider = OpenAIProvider(env={"TEST_KEY": API_KEY}, policy=policy(url))
    with pytest.raises(TransientAgentError) as caught:
        await provider.invoke(make_agent(url), call())
    assert caught.value.error_type == "connection_error"


@pytest.mark.parametrize("model", ["garbage", "wrong-shape"])
async def test_malformed_answers_are_the_agents_fault(server: str, provider, model: str):
    with pytest.raises(AgentFaultError) as caught:
        await provider.invoke(make_agent(server, model=model), call())
    assert caught.value.error_type == "malformed_response"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"model": ""}, "model must be a model name"),
        ({"temprature": 0.1}, "unknown provider.config keys for kind 'openai': temprature"),
    ],
)
async def test_bad_config_is_permanent(server: str, provider, config: dict, message: str):
    with pytest.raises(PermanentAgentError, match=message):
        await provider.invoke(make_agent(server, **config), call())


def test_retry_after_parsing() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after({"Retry-After": later}, now=now) == 30
    assert parse_retry_after({"Retry-After": "2.5"}) == 2.5
    assert parse_retry_after({"Retry-After": "-3"}) == 0
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({"retry-after-ms": "oops", "Retry-After": "4"}) == 4
    assert parse_retry_after({}) is None


async def test_runtime_runs_a_session_on_an_openai_agent_and_stores_no_key(
    server: str, store: EventStore, registry: AgentRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOFX_TEST_OPENAI_KEY", API_KEY)
    # the operator allows this server and this key, here through environment overrides
    monkeypatch.setenv("NOFX_POLICY_OPENAI_ALLOWED_BASE_URLS", server)
    monkeypatch.setenv("NOFX_POLICY_SECRETS_ALLOWED_ENV", "NOFX_TEST_OPENAI_KEY")
    registry.register(
        AgentSpec(
            name="remote",
            capabilities=[{"name": "code.generate", "proficiency": 4}],
            provider={
                "kind": "openai",
                "config": {
                    "base_url": server,
                    "model": "gpt-test",
                    "api_key_env": "NOFX_TEST_OPENAI_KEY",
                },
            },
            pricing={"input_per_1k_tokens": 0.01, "output_per_1k_tokens": 0.03},
        )
    )
    runtime = Runtime(store, registry, config=RuntimeConfig(time_scale=1.0, call_timeout_s=5))
    request = SessionRequest(task=Task(prompt="say hi", capability="code.generate"))
    session = runtime.sessions.submit(request)
    done = await runtime.run_session(session.session_id)
    assert done.status is SessionStatus.SUCCEEDED
    assert done.output == "echo: say hi"
    assert (done.input_tokens, done.output_tokens) == (120, 30)
    assert done.cost_usd == pytest.approx(0.0021)
    everything = json.dumps([e.payload for e in store.read_all(limit=10_000)])
    assert API_KEY not in everything


# -- the operator policy at call time (issue 10, finding 2) ----------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://localhost:{port}/v1",  # the same server under another origin
        "https://127.0.0.1:{port}/v1",
    ],
)
async def test_a_host_the_policy_does_not_allow_is_never_called(server: str, url: str):
    port = server.split(":")[2].split("/")[0]
    before = len(ChatHandler.requests)
    provider = OpenAIProvider(env={"TEST_KEY": API_KEY}, policy=policy(server))
    with pytest.raises(PermanentAgentError, match=r"openai\.allowed_base_urls") as caught:
        await provider.invoke(make_agent(url.format(port=port)), call())
    assert caught.value.error_type == "policy_denied"
    assert len(ChatHandler.requests) == before


async def test_a_key_variable_the_policy_does_not_allow_is_never_read_or_sent(server: str):
    before = len(ChatHandler.requests)
    provider = OpenAIProvider(env={"SOME_SERVER_SECRET": "hunter2"}, policy=policy(server))
    agent = make_agent(server, api_key_env="SOME_SERVER_SECRET")
    with pytest.raises(PermanentAgentError, match=r"secrets\.allowed_env") as caught:
        await provider.invoke(agent, call())
    assert caught.value.error_type == "policy_denied"
    assert len(ChatHandler.requests) == before


async def test_a_key_from_the_operators_secrets_file_is_sent(server: str):
    provider = OpenAIProvider(env={}, policy=policy(server, secrets={"openai": API_KEY}))
    agent = make_agent(server, api_key_env=None, secret_ref="file:openai")
    result = await provider.invoke(agent, call("hi"))
    assert result.output == "echo: hi"


async def test_redirects_are_not_followed(server: str):
    """A redirect could carry the Authorization header to a host the operator never allowed."""
    port = server.split(":")[2].split("/")[0]
    before = len(ChatHandler.requests)
    agent = make_agent(
        server, model="redirect", system_prompt=f"http://localhost:{port}/v1/chat/completions"
    )
    provider = OpenAIProvider(env={"TEST_KEY": API_KEY}, policy=policy(server))
    with pytest.raises(PermanentAgentError) as caught:
        await provider.invoke(agent, call())
    assert caught.value.error_type == "redirect_refused"
    assert len(ChatHandler.requests) == before + 1  # the redirect itself, nothing after


async def test_a_key_echoed_by_the_server_is_redacted(server: str, provider: OpenAIProvider):
    result = await provider.invoke(make_agent(server, model="echo-key"), call())
    assert result.output == "your header was Bearer [REDACTED:TEST_KEY]"
    with pytest.raises(PermanentAgentError) as caught:
        await provider.invoke(make_agent(server, model="echo-key-error"), call())
    assert API_KEY not in str(caught.value) and "[REDACTED:TEST_KEY]" in str(caught.value)
    assert API_KEY not in caught.value.message, "the problem+json detail reads .message"
