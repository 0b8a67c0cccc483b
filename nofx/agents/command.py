"""Runs an agent as a subprocess (a coding-agent CLI, a script): the prompt in, stdout out.

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
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from nofx.agents.base import (
    AgentCall,
    AgentFaultError,
    AgentResult,
    PermanentAgentError,
    TransientAgentError,
)
from nofx.agents.openai import estimate_tokens
from nofx.domain import Agent

EX_TEMPFAIL = 75
STDIN_MODES = ("prompt", "json", "none")


@dataclass(frozen=True)
class CommandConfig:
    """``provider.config`` of a ``command`` agent."""

    argv: list[str]
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    inherit_env: bool = True
    timeout_s: float = 300.0
    stdin: Literal["prompt", "json", "none"] = "prompt"

    @classmethod
    def from_agent(cls, agent: Agent) -> CommandConfig:
        config = agent.provider.config
        argv = config.get("argv")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise PermanentAgentError(
                f"agent {agent.name}: provider.config.argv must be a non-empty list of strings, "
                "e.g. ['my-agent', '--quiet']",
                error_type="configuration_error",
            )
        stdin = config.get("stdin", "prompt")
        if stdin not in STDIN_MODES:
            raise PermanentAgentError(
                f"agent {agent.name}: provider.config.stdin is {stdin!r}; "
                f"use one of {', '.join(STDIN_MODES)}",
                error_type="configuration_error",
            )
        return cls(
            argv=list(argv),
            cwd=config.get("cwd"),
            env={str(k): str(v) for k, v in config.get("env", {}).items()},
            inherit_env=bool(config.get("inherit_env", True)),
            timeout_s=float(config.get("timeout_s", 300.0)),
            stdin=stdin,
        )

    def environment(self) -> dict[str, str]:
        base = dict(os.environ) if self.inherit_env else {}
        return {**base, **self.env}


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


def _tail(data: bytes, limit: int = 500) -> str:
    return data.decode(errors="replace").strip()[-limit:]


def _kill_group(process: asyncio.subprocess.Process) -> None:
    """Kill the process and everything it started (it leads its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


class CommandProvider:
    """One provider object serves every ``command`` agent."""

    async def invoke(self, agent: Agent, call: AgentCall) -> AgentResult:
        config = CommandConfig.from_agent(agent)
        if config.cwd is not None and not Path(config.cwd).is_dir():
            raise PermanentAgentError(
                f"agent {agent.name}: working directory {config.cwd!r} does not exist; "
                "create it or fix provider.config.cwd",
                error_type="configuration_error",
            )
        env = config.environment()
        executable = config.argv[0]
        if shutil.which(executable, path=env.get("PATH")) is None:
            raise PermanentAgentError(
                f"agent {agent.name}: executable {executable!r} was not found "
                "(or is not executable) on PATH; install it or put its full path in "
                "provider.config.argv[0]",
                error_type="executable_not_found",
            )
        payload = stdin_payload(config, agent, call)
        timeout = min(config.timeout_s, call.timeout_s)
        started = time.perf_counter()
        try:
            process = await asyncio.create_subprocess_exec(
                *config.argv,
                stdin=asyncio.subprocess.DEVNULL if payload is None else asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=config.cwd,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:  # e.g. a PATH entry that is not executable after all
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
        if code != 0:
            stderr_tail = _tail(stderr) or "(no stderr)"
            if code == EX_TEMPFAIL:
                raise TransientAgentError(
                    f"{agent.name}: {executable} asked to be retried later "
                    f"(exit {EX_TEMPFAIL}, EX_TEMPFAIL): {stderr_tail}",
                    error_type="temporary_failure",
                    latency_ms=latency_ms,
                    input_tokens=input_tokens,
                )
            kind = "killed_by_signal" if code is not None and code < 0 else "nonzero_exit"
            raise AgentFaultError(
                f"{agent.name}: {executable} exited with code {code}: {stderr_tail}",
                error_type=kind,
                latency_ms=latency_ms,
                input_tokens=input_tokens,
            )
        output = stdout.decode(errors="replace").strip()
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
                "stderr": _tail(stderr),
            },
        )
