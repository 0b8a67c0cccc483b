"""CommandProvider with real ``python -c`` subprocesses, under an explicit operator policy."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from nofx.agents import AgentFaultError, PermanentAgentError, TransientAgentError
from nofx.agents.base import AgentCall
from nofx.agents.command import CommandProvider
from nofx.domain import Agent, AgentSpec, SessionRequest, SessionStatus, Task, utcnow
from nofx.registry import AgentRegistry
from nofx.runtime import Runtime, RuntimeConfig
from nofx.security.policy import CommandPolicy, OperatorPolicy, SecretsPolicy
from nofx.store import EventStore

PYTHON = os.path.realpath(sys.executable)


def policy(*executables: str, cwd_root: Path | None = None, **command: object) -> OperatorPolicy:
    """This Python (and any other executables given) allowed; FLAVOUR settable by agents."""
    return OperatorPolicy(
        command=CommandPolicy(
            allowed_executables=frozenset({PYTHON, *map(os.path.realpath, executables)}),
            allowed_env=frozenset({"FLAVOUR"}),
            allowed_cwd_roots=(os.path.realpath(cwd_root),) if cwd_root else (),
            **command,  # type: ignore[arg-type]
        ),
        secrets=SecretsPolicy(allowed_env=frozenset({"NOFX_TEST_AGENT_SECRET"})),
    )


def provider(**kwargs: object) -> CommandProvider:
    return CommandProvider(policy=policy(**kwargs))  # type: ignore[arg-type]


def make_agent(argv: list[str], **config: object) -> Agent:
    now = utcnow()
    return Agent(
        agent_id="agt_cmd",
        name="cli",
        capabilities=[{"name": "code.generate"}],
        provider={"kind": "command", "config": {"argv": argv, **config}},
        pricing={"per_call": 0.001, "input_per_1k_tokens": 0.002},
        created_at=now,
        updated_at=now,
    )


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def running(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting to be reaped."""
    status = Path(f"/proc/{pid}/status")
    try:
        state = next(line for line in status.read_text().splitlines() if line.startswith("State:"))
    except (FileNotFoundError, ProcessLookupError):
        return False
    return "zombie" not in state


def call(prompt: str = "reverse me", timeout_s: float = 10.0) -> AgentCall:
    return AgentCall(
        call_id="c1",
        capability="code.generate",
        prompt=prompt,
        input_tokens=10,
        timeout_s=timeout_s,
        context={"repo": "nofx"},
    )


async def test_prompt_goes_in_on_stdin_and_stdout_comes_back() -> None:
    agent = make_agent(python("import sys; print(sys.stdin.read()[::-1])"))
    result = await provider().invoke(agent, call("abcdefgh"))
    assert result.output == "hgfedcba"
    assert (result.input_tokens, result.output_tokens) == (2, 2)
    assert result.cost_usd == pytest.approx(0.001 + 2 / 1000 * 0.002)
    assert result.metadata["tokens_estimated"] is True and result.metadata["exit_code"] == 0


async def test_json_stdin_cwd_and_env(tmp_path: Path) -> None:
    code = (
        "import json, os, sys; doc = json.load(sys.stdin); "
        "print(json.dumps([doc['prompt'], doc['context'], os.getcwd(), os.environ['FLAVOUR']]))"
    )
    agent = make_agent(python(code), stdin="json", cwd=str(tmp_path), env={"FLAVOUR": "mint"})
    result = await provider(cwd_root=tmp_path).invoke(agent, call("go"))
    prompt, context, cwd, flavour = json.loads(result.output)
    assert prompt == "go" and context == {"repo": "nofx"}
    assert Path(cwd) == tmp_path.resolve() and flavour == "mint"


async def test_no_stdin_mode_gives_the_process_nothing_to_read() -> None:
    agent = make_agent(python("import sys; print(repr(sys.stdin.read()))"), stdin="none")
    result = await provider().invoke(agent, call())
    assert result.output == "''"


async def test_nonzero_exit_is_the_agents_fault_with_stderr() -> None:
    agent = make_agent(python("import sys; sys.stderr.write('model crashed'); sys.exit(3)"))
    with pytest.raises(AgentFaultError) as caught:
        await provider().invoke(agent, call())
    assert caught.value.error_type == "nonzero_exit"
    assert "code 3" in str(caught.value) and "model crashed" in str(caught.value)


async def test_ex_tempfail_is_transient() -> None:
    agent = make_agent(python("import sys; sys.exit(75)"))
    with pytest.raises(TransientAgentError) as caught:
        await provider().invoke(agent, call())
    assert caught.value.error_type == "temporary_failure"


async def test_a_process_killed_by_a_signal_is_the_agents_fault() -> None:
    agent = make_agent(python("import os, signal; os.kill(os.getpid(), signal.SIGTERM)"))
    with pytest.raises(AgentFaultError) as caught:
        await provider().invoke(agent, call())
    assert caught.value.error_type == "killed_by_signal"


async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    marker = tmp_path / "grandchild.pid"
    code = (
        "import subprocess, sys, time; "
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); "
        f"open({str(marker)!r}, 'w').write(str(child.pid)); time.sleep(30)"
    )
    agent = make_agent(python(code), timeout_s=5)
    started = time.perf_counter()
    with pytest.raises(TransientAgentError) as caught:
        await provider().invoke(agent, call(timeout_s=1.0))
    assert caught.value.error_type == "timeout"
    assert time.perf_counter() - started < 5
    grandchild = int(marker.read_text())
    for _ in range(50):
        if not running(grandchild):
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"grandchild {grandchild} survived the timeout")


async def test_missing_executable_is_permanent_and_says_what_to_do() -> None:
    agent = make_agent(["definitely-not-an-agent-cli", "--help"])
    with pytest.raises(PermanentAgentError, match="was not found") as caught:
        await provider().invoke(agent, call())
    assert caught.value.error_type == "executable_not_found"
    assert "provider.config.argv[0]" in str(caught.value)


async def test_a_file_that_cannot_be_executed_is_permanent(tmp_path: Path) -> None:
    script = tmp_path / "agent.sh"
    script.write_text("#!/definitely/missing/interpreter\n")
    script.chmod(0o755)
    with pytest.raises(PermanentAgentError, match="cannot start"):
        await CommandProvider(policy=policy(str(script))).invoke(make_agent([str(script)]), call())


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"argv": []}, "non-empty list"),
        ({"argv": "python -c 1"}, "non-empty list"),
        ({"stdin": "file"}, "use one of prompt, json, none"),
        ({"cwd": "/tmp/definitely/not/here"}, "does not exist"),
    ],
)
async def test_bad_config_is_permanent(config: dict, message: str) -> None:
    agent = make_agent(python("print(1)"))
    agent = agent.model_copy(
        update={
            "provider": agent.provider.model_copy(
                update={"config": {**agent.provider.config, **config}}
            )
        }
    )
    with pytest.raises(PermanentAgentError, match=message):
        await provider(cwd_root=Path("/tmp")).invoke(agent, call())


@pytest.mark.usefixtures("local_agents_policy")
async def test_runtime_reroutes_from_a_crashing_command_to_a_working_one(
    store: EventStore, registry: AgentRegistry
) -> None:
    registry.register(
        AgentSpec(
            name="crashy",
            capabilities=[{"name": "code.generate", "proficiency": 5}],
            provider={"kind": "command", "config": {"argv": python("raise SystemExit(2)")}},
        )
    )
    registry.register(
        AgentSpec(
            name="steady",
            capabilities=[{"name": "code.generate", "proficiency": 3}],
            provider={
                "kind": "command",
                "config": {"argv": python("import sys; print('ok:', sys.stdin.read())")},
            },
        )
    )
    from nofx.routing.selection import ProficiencySelector

    runtime = Runtime(
        store,
        registry,
        selector=ProficiencySelector(),  # deterministic: the crashing expert is tried first
        config=RuntimeConfig(time_scale=1.0, call_timeout_s=10),
    )
    session = runtime.sessions.submit(
        SessionRequest(task=Task(prompt="fix bug", capability="code.generate"))
    )
    done = await runtime.run_session(session.session_id)
    assert done.status is SessionStatus.SUCCEEDED and done.output == "ok: fix bug"
    failed = [e for e in runtime.sessions.events(session.session_id) if e.type == "StepFailed"]
    assert [e.payload["error.type"] for e in failed] == ["nonzero_exit"]


# -- the operator policy at call time (issue 10, findings 1 and 10) --------------------------
async def test_a_command_the_policy_does_not_allow_never_starts(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    agent = make_agent(["/bin/sh", "-c", f"touch {marker}; id"])
    with pytest.raises(PermanentAgentError) as caught:
        await provider().invoke(agent, call())
    assert caught.value.error_type == "policy_denied"
    assert "command.allowed_executables" in str(caught.value)
    assert not marker.exists()


async def test_the_default_policy_denies_every_command(tmp_path: Path) -> None:
    with pytest.raises(PermanentAgentError) as caught:
        await CommandProvider(policy=OperatorPolicy()).invoke(make_agent(python("1")), call())
    assert caught.value.error_type == "policy_denied"


async def test_an_argv_prefix_allows_that_module_and_nothing_else() -> None:
    rules = OperatorPolicy(
        command=CommandPolicy(allowed_argv_prefixes=((PYTHON, "-c", "print('prefixed')"),))
    )
    result = await CommandProvider(policy=rules).invoke(
        make_agent(python("print('prefixed')")), call()
    )
    assert result.output == "prefixed"
    with pytest.raises(PermanentAgentError) as caught:
        await CommandProvider(policy=rules).invoke(make_agent(python("print('other')")), call())
    assert caught.value.error_type == "policy_denied"


async def test_the_worker_environment_is_not_inherited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOFX_TEST_SERVER_ONLY", "worker-private-value")
    code = "import os, json; print(json.dumps(sorted(os.environ)))"
    result = await provider().invoke(make_agent(python(code)), call())
    names = set(json.loads(result.output))
    assert "NOFX_TEST_SERVER_ONLY" not in names
    assert "PATH" in names and names <= {*policy().command.env_passthrough, "LC_CTYPE"}


async def test_inheriting_the_whole_environment_is_the_operators_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NOFX_TEST_SERVER_ONLY", "worker-private-value")
    agent = make_agent(python("import os; print(os.environ['NOFX_TEST_SERVER_ONLY'])"))
    agent = agent.model_copy(
        update={
            "provider": agent.provider.model_copy(
                update={"config": {**agent.provider.config, "inherit_env": True}}
            )
        }
    )
    with pytest.raises(PermanentAgentError, match=r"command\.allow_inherit_env"):
        await provider().invoke(agent, call())
    result = await provider(allow_inherit_env=True).invoke(agent, call())
    assert result.output == "worker-private-value"


async def test_a_referenced_secret_reaches_the_child_and_is_redacted_from_its_output(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = "s3cr3t-value-9f2c"
    monkeypatch.setenv("NOFX_TEST_AGENT_SECRET", secret)
    code = (
        "import os, sys; v = os.environ['TOKEN_FOR_CHILD']; "
        "print('key=' + v + ' len=' + str(len(v))); sys.stderr.write('stderr ' + v)"
    )
    agent = make_agent(python(code), secret_env={"TOKEN_FOR_CHILD": "env:NOFX_TEST_AGENT_SECRET"})
    result = await provider().invoke(agent, call())
    assert result.output == f"key=[REDACTED:NOFX_TEST_AGENT_SECRET] len={len(secret)}"
    assert secret not in json.dumps(result.metadata)
    assert "[REDACTED:NOFX_TEST_AGENT_SECRET]" in result.metadata["stderr"]


async def test_a_secret_in_a_failing_commands_stderr_is_redacted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = "another-s3cret-77"
    monkeypatch.setenv("NOFX_TEST_AGENT_SECRET", secret)
    code = "import os, sys; sys.stderr.write('x' * 600 + os.environ['S']); sys.exit(3)"
    agent = make_agent(python(code), secret_env={"S": "env:NOFX_TEST_AGENT_SECRET"})
    with pytest.raises(AgentFaultError) as caught:
        await provider().invoke(agent, call())
    assert secret not in str(caught.value) and secret[-8:] not in str(caught.value)
    assert "[REDACTED:NOFX_TEST_AGENT_SECRET]" in str(caught.value)


async def test_a_secret_the_policy_does_not_allow_is_refused_before_running() -> None:
    agent = make_agent(python("print(1)"), secret_env={"S": "env:HOME_SECRET_NOT_ALLOWED"})
    with pytest.raises(PermanentAgentError, match=r"secrets\.allowed_env") as caught:
        await provider().invoke(agent, call())
    assert caught.value.error_type == "policy_denied"


async def test_an_unset_secret_is_a_permanent_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOFX_TEST_AGENT_SECRET", raising=False)
    agent = make_agent(python("print(1)"), secret_env={"S": "env:NOFX_TEST_AGENT_SECRET"})
    with pytest.raises(PermanentAgentError) as caught:
        await provider().invoke(agent, call())
    assert caught.value.error_type == "missing_secret"


async def test_an_env_name_the_policy_does_not_allow_is_refused() -> None:
    agent = make_agent(python("print(1)"), env={"LD_PRELOAD": "/tmp/evil.so"})
    with pytest.raises(PermanentAgentError, match=r"command\.allowed_env") as caught:
        await provider().invoke(agent, call())
    assert caught.value.error_type == "policy_denied"


async def test_a_working_directory_outside_the_allowed_roots_is_refused(tmp_path: Path) -> None:
    agent = make_agent(python("print(1)"), cwd="/")
    with pytest.raises(PermanentAgentError, match=r"command\.allowed_cwd_roots") as caught:
        await provider(cwd_root=tmp_path).invoke(agent, call())
    assert caught.value.error_type == "policy_denied"


async def test_executables_are_matched_by_the_real_path_that_runs(tmp_path: Path) -> None:
    allowed_link = tmp_path / "my-agent"
    allowed_link.symlink_to(PYTHON)
    result = await provider().invoke(make_agent([str(allowed_link), "-c", "print('ran')"]), call())
    assert result.output == "ran"
    disguised = tmp_path / "python3"  # named like an interpreter, really a shell
    disguised.symlink_to("/bin/sh")
    with pytest.raises(PermanentAgentError) as caught:
        await provider().invoke(make_agent([str(disguised), "-c", "id"]), call())
    assert caught.value.error_type == "policy_denied"
