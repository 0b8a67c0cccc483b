"""PythonProvider calling real functions in tests.agents.agent_functions."""

from __future__ import annotations

import threading

import pytest

from nofx.agents import AgentFaultError, PermanentAgentError, TransientAgentError
from nofx.agents.base import AgentCall
from nofx.agents.python import PythonProvider
from nofx.domain import Agent, AgentSpec, SessionRequest, SessionStatus, Task, utcnow
from nofx.registry import AgentRegistry
from nofx.runtime import Runtime, RuntimeConfig
from nofx.security.policy import OperatorPolicy, PythonPolicy
from nofx.store import EventStore

MODULE = "tests.agents.agent_functions"
POLICY = OperatorPolicy(
    python=PythonPolicy(
        allowed_modules=("tests.agents",),
        allowed_callables=frozenset({"no_such_package_xyz.agents:run"}),
    )
)


def provider() -> PythonProvider:
    return PythonProvider(policy=POLICY)


def make_agent(target: object, **config: object) -> Agent:
    now = utcnow()
    return Agent(
        agent_id="agt_py",
        name="local",
        capabilities=[{"name": "text.summarize"}],
        provider={"kind": "python", "config": {"callable": target, **config}},
        pricing={"input_per_1k_tokens": 1.0, "output_per_1k_tokens": 2.0},
        created_at=now,
        updated_at=now,
    )


def call(prompt: str = "hello world", **context: object) -> AgentCall:
    return AgentCall(
        call_id="c1", capability="text.summarize", prompt=prompt, input_tokens=3, context=context
    )


async def test_sync_function_runs_in_a_worker_thread_with_estimated_tokens() -> None:
    result = await provider().invoke(make_agent(f"{MODULE}:shout"), call("hello world"))
    assert result.output.startswith("HELLO WORLD [text.summarize on ")
    assert threading.current_thread().name not in result.output
    assert result.input_tokens == 3  # ceil(11 / 4)
    assert result.metadata["tokens_estimated"] is True


async def test_async_function_reports_its_own_tokens_and_is_priced() -> None:
    result = await provider().invoke(make_agent(f"{MODULE}:counted"), call("abc"))
    assert result.output == "cba"
    assert (result.input_tokens, result.output_tokens) == (11, 7)
    assert result.cost_usd == pytest.approx(11 / 1000 + 7 / 1000 * 2)
    assert result.metadata["tokens_estimated"] is False


async def test_partly_reported_tokens_are_completed_by_estimate() -> None:
    result = await provider().invoke(make_agent(f"{MODULE}:partly_counted"), call())
    assert (result.input_tokens, result.output_tokens) == (5, 10)
    assert result.metadata["tokens_estimated"] is True


async def test_sync_function_returning_a_coroutine_is_awaited() -> None:
    result = await provider().invoke(make_agent(f"{MODULE}:returns_coroutine"), call("ab"))
    assert result.output == "ba"


async def test_context_carries_call_context_and_options() -> None:
    agent = make_agent(f"{MODULE}:echo_options", options={"style": "terse"})
    result = await provider().invoke(agent, call(ticket="T-1"))
    assert result.output == "terse:T-1"


async def test_dotted_attribute_paths_resolve() -> None:
    result = await provider().invoke(make_agent(f"{MODULE}:Toolbox.summarise"), call())
    assert result.output == "hello"


async def test_exceptions_are_the_agents_fault_named_by_type() -> None:
    with pytest.raises(AgentFaultError, match="model divided by zero") as caught:
        await provider().invoke(make_agent(f"{MODULE}:explodes"), call())
    assert caught.value.error_type == "builtins.ZeroDivisionError"


async def test_agent_errors_raised_by_the_function_keep_their_class() -> None:
    with pytest.raises(TransientAgentError) as caught:
        await provider().invoke(make_agent(f"{MODULE}:busy"), call())
    assert caught.value.error_type == "rate_limited"


@pytest.mark.parametrize("name", ["returns_number", "bad_tokens"])
async def test_wrong_return_values_are_bad_output(name: str) -> None:
    with pytest.raises(AgentFaultError) as caught:
        await provider().invoke(make_agent(f"{MODULE}:{name}"), call())
    assert caught.value.error_type == "bad_output"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_such_package_xyz.agents:run", "cannot import module 'no_such_package_xyz.agents'"),
        (f"{MODULE}:missing", "has no attribute 'missing'"),
        (f"{MODULE}:NOT_CALLABLE", "is a str, not a function"),
        ("tests.agents.broken_module:run", "raised RuntimeError"),
        ("tests.agents.agent_functions.shout", "must look like 'package.module:function'"),
        (None, "must look like"),
    ],
)
async def test_import_problems_are_permanent_with_clear_messages(target, message: str) -> None:
    with pytest.raises(PermanentAgentError, match=message) as caught:
        await provider().invoke(make_agent(target), call())
    assert caught.value.error_type in ("import_error", "configuration_error")


@pytest.mark.usefixtures("local_agents_policy")
async def test_runtime_runs_a_python_agent_end_to_end(
    store: EventStore, registry: AgentRegistry
) -> None:
    registry.register(
        AgentSpec(
            name="local",
            capabilities=[{"name": "text.summarize"}],
            provider={"kind": "python", "config": {"callable": f"{MODULE}:counted"}},
        )
    )
    runtime = Runtime(store, registry, config=RuntimeConfig(time_scale=1.0, call_timeout_s=5))
    session = runtime.sessions.submit(
        SessionRequest(task=Task(prompt="stressed", capability="text.summarize"))
    )
    done = await runtime.run_session(session.session_id)
    assert done.status is SessionStatus.SUCCEEDED and done.output == "desserts"
    assert (done.input_tokens, done.output_tokens) == (11, 7)


# -- the operator policy at call time (issue 10, finding 1) ----------------------------------
@pytest.mark.parametrize(
    "target",
    [
        "builtins:eval",
        "os:system",
        f"{MODULE}:threading.current_thread",  # imported into an allowed module, not defined there
        f"{MODULE}:Toolbox.__init__",  # private parts could walk to anything
        "tests.agents_evil:run",  # a module-name prefix is not a package prefix
    ],
)
async def test_callables_the_policy_does_not_allow_are_refused(target: str) -> None:
    with pytest.raises(PermanentAgentError) as caught:
        await provider().invoke(make_agent(target), call())
    assert caught.value.error_type == "policy_denied"


async def test_the_default_policy_denies_every_python_agent() -> None:
    with pytest.raises(PermanentAgentError, match=r"python\.allowed_callables") as caught:
        await PythonProvider(policy=OperatorPolicy()).invoke(make_agent(f"{MODULE}:shout"), call())
    assert caught.value.error_type == "policy_denied"


async def test_an_exactly_allowed_callable_runs_without_a_module_grant() -> None:
    rules = OperatorPolicy(python=PythonPolicy(allowed_callables=frozenset({f"{MODULE}:shout"})))
    result = await PythonProvider(policy=rules).invoke(make_agent(f"{MODULE}:shout"), call("hi"))
    assert result.output.startswith("HI")
    with pytest.raises(PermanentAgentError):
        await PythonProvider(policy=rules).invoke(make_agent(f"{MODULE}:counted"), call())


async def test_a_callable_allowed_once_is_checked_again_on_every_call() -> None:
    allowing, denying = provider(), PythonProvider(policy=OperatorPolicy())
    agent = make_agent(f"{MODULE}:shout")
    await allowing.invoke(agent, call())
    denying._functions = allowing._functions  # a warm cache must not bypass the policy
    with pytest.raises(PermanentAgentError) as caught:
        await denying.invoke(agent, call())
    assert caught.value.error_type == "policy_denied"


async def test_an_unreadable_policy_fails_every_call_closed(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "policy.yaml"
    broken.write_text("python:\n  allowed_modules: [tests]\n  typo_key: true\n")
    monkeypatch.setenv("NOFX_POLICY_FILE", str(broken))
    with pytest.raises(PermanentAgentError, match="typo_key") as caught:
        await PythonProvider().invoke(make_agent(f"{MODULE}:shout"), call())
    assert caught.value.error_type == "policy_invalid"
