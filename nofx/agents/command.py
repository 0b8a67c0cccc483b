"""Runs an agent as a subprocess (a coding-agent CLI, a script): the prompt in, stdout out.

Only what the operator policy allows runs (``command.allowed_executables`` /
``allowed_argv_prefixes``), checked again before every call; the child gets a
minimal environment plus the secrets the agent references, and every secret
value it prints is replaced by ``[REDACTED:<name>]`` before anything is returned.

Exit code 0 is success; 75 (EX_TEMPFAIL, "try again later") is transient; any
other exit is the agent's fault. A call that outlives its timeout has its whole
process group killed, so no grandchild keeps running, and counts as a transient
timeout. Token counts are estimates (about four characters per token) and the
result says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from nofx.agents.base import (
    AgentCall,
    AgentFaultError,
    AgentResult,
    PermanentAgentError,
    PolicyBound,
    TransientAgentError,
    refused,
)
from nofx.agents.openai import estimate_tokens
from nofx.domain import Agent
from nofx.errors import NofxError
from nofx.security.policy import (
    OperatorPolicy,
    Redactor,
    SecretRef,
    check_command,
    resolve_secret,
)

EX_TEMPFAIL = 75
STDIN_MODES = ("prompt", "json", "none")


@dataclass(frozen=True)
class CommandConfig:
    """``provider.config`` of a ``command`` agent, checked against the operator policy.

    ``argv[0]`` is kept as written (a multi-call binary dispatches on it); ``executable``
    is the resolved real path the policy allowed, and the one that is started.
    """

    argv: list[str]
    executable: str
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    secret_env: dict[str, SecretRef] = field(default_factory=dict)
    inherit_env: bool = False
    timeout_s: float = 300.0
    stdin: Literal["prompt", "json", "none"] = "prompt"

    @classmethod
    def from_agent(
        cls, agent: Agent, policy: OperatorPolicy, env: Mapping[str, str] | None = None
    ) -> CommandConfig:
        env = os.environ if env is None else env
        config = agent.provider.config
        path = env.get("PATH") if "PATH" in policy.command.env_passthrough else None
        try:
            resolved = check_command(config, policy, path=path)
        except NofxError as exc:
            raise refused(agent, exc) from None
        return cls(
            argv=list(config["argv"]),
            executable=resolved[0],
            cwd=config.get("cwd"),
            env=dict(config.get("env", {})),
            secret_env={
                var: ref
                for var, raw in config.get("secret_env", {}).items()
                if (ref := SecretRef.parse(raw)) is not None
            },
            inherit_env=bool(config.get("inherit_env", False)),
            timeout_s=float(config.get("timeout_s", 300.0)),
            stdin=config.get("stdin", "prompt"),
        )

    def environment(
        self, agent: Agent, policy: OperatorPolicy, env: Mapping[str, str] | None = None
    ) -> tuple[dict[str, str], dict[str, str]]:
        """The child's environment, and the secrets in it by name (to redact its output).

        Only ``command.env_passthrough`` names, the agent's own allowed ``env`` and the
        secrets it references: never the worker's whole environment unless the operator
        set ``command.allow_inherit_env``.
        """
        env = os.environ if env is None else env
        if self.inherit_env:
            base = dict(env)
        else:
            base = {k: env[k] for k in policy.command.env_passthrough if k in env}
        secrets: dict[str, str] = {}
        child = {**base, **self.env}
        for var, ref in self.secret_env.items():
            value = resolve_secret(ref, policy.secrets, env)
            if value is None:
                raise PermanentAgentError(
                    f"agent {agent.name}: secret {ref} for {var} is not set; the operator "
                    "sets it before starting the workers",
                    error_type="missing_secret",
                )
            child[var] = value
            secrets[ref.name] = value
        return child, secrets


def stdin_payload(config: CommandConfig, agent: Agent, call: AgentCall) -> bytes | None:
    if config.stdin == "none":
        return None
    if config.stdin == "json":
        document = {
            "prompt": call.prompt,
            "capability": call.capability,
            "call_id": call.call_id,
            "agent": agent.name,
            "context": call.context,
        }
        return json.dumps(document, default=str).encode()
    return call.prompt.encode()


def _tail(text: str, limit: int = 500) -> str:
    return text.strip()[-limit:]


def _kill_group(process: asyncio.subprocess.Process) -> None:
    """Kill the process and everything it started (it leads its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


class CommandProvider(PolicyBound):
    """One provider object serves every ``command`` agent."""

    def __init__(
        self, policy: OperatorPolicy | None = None, env: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(policy)
        self._env = env

    async def invoke(self, agent: Agent, call: AgentCall) -> AgentResult:
        policy = self.policy_for(agent)
        config = CommandConfig.from_agent(agent, policy, self._env)
        if config.cwd is not None and not Path(config.cwd).is_dir():
            raise PermanentAgentError(
                f"agent {agent.name}: working directory {config.cwd!r} does not exist; "
                "create it or fix provider.config.cwd",
                error_type="configuration_error",
            )
        env, secrets = config.environment(agent, policy, self._env)
        redact = Redactor(secrets)
        executable = config.argv[0]
        payload = stdin_payload(config, agent, call)
        timeout = min(config.timeout_s, call.timeout_s)
        started = time.perf_counter()
        try:
            process = await asyncio.create_subprocess_exec(
                *config.argv,
                executable=config.executable,
                stdin=asyncio.subprocess.DEVNULL if payload is None else asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=config.cwd,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:  # e.g. a file that is not executable after all
            raise PermanentAgentError(
                f"agent {agent.name}: cannot start {executable!r}: {exc}; "
                "check provider.config.argv and the file's permissions",
                error_type="executable_not_found",
            ) from exc
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(payload), timeout)
        except TimeoutError:
            _kill_group(process)
            await process.wait()
            raise TransientAgentError(
                f"{agent.name}: {executable} did not finish within {timeout:g}s; "
                "its process group was killed",
                error_type="timeout",
                latency_ms=(time.perf_counter() - started) * 1000,
                input_tokens=estimate_tokens(call.prompt),
            ) from None
        except BaseException:  # cancelled by the runtime: leave nothing running
            _kill_group(process)
            raise
        latency_ms = (time.perf_counter() - started) * 1000
        input_tokens = estimate_tokens(call.prompt)
        code = process.returncode
        # redact the whole text first: a secret cut by the tail must not leak its remainder
        stderr_tail = _tail(redact(stderr.decode(errors="replace")))
        if code != 0:
            shown = stderr_tail or "(no stderr)"
            if code == EX_TEMPFAIL:
                raise TransientAgentError(
                    f"{agent.name}: {executable} asked to be retried later "
                    f"(exit {EX_TEMPFAIL}, EX_TEMPFAIL): {shown}",
                    error_type="temporary_failure",
                    latency_ms=latency_ms,
                    input_tokens=input_tokens,
                )
            kind = "killed_by_signal" if code is not None and code < 0 else "nonzero_exit"
            raise AgentFaultError(
                f"{agent.name}: {executable} exited with code {code}: {shown}",
                error_type=kind,
                latency_ms=latency_ms,
                input_tokens=input_tokens,
            )
        output = redact(stdout.decode(errors="replace").strip())
        output_tokens = estimate_tokens(output)
        return AgentResult(
            output=output,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=agent.pricing.cost(input_tokens, output_tokens),
            latency_ms=latency_ms,
            metadata={
                "tokens_estimated": True,
                "token_estimate": "len(text) / 4",
                "exit_code": code,
                "stderr": stderr_tail,
            },
        )
