"""The operator policy (issue 10, findings 1, 2 and the secrets items of 10), through the real
API with real keys of tenants alpha and beta, the real runtime and the real CLI.

Every refusal is checked for what a tenant sees (403/422 problem+json naming the policy key)
and for what is left behind (nothing stored, no secret in any event).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import insert

from nofx.api.app import create_app
from nofx.domain import AgentSpec, SessionStatus, utcnow
from nofx.registry import AgentRegistry
from nofx.runtime import Runtime, RuntimeConfig
from nofx.security import ApiKeyService, Scope
from nofx.security.policy import (
    REDACTED,
    CommandPolicy,
    OpenAIPolicy,
    OperatorPolicy,
    PolicyFileError,
    PythonPolicy,
    Redactor,
    SecretRef,
    argv_prefix_allowed,
    base_url_allowed,
    callable_allowed,
    executable_allowed,
    inline_secret_paths,
    load_policy,
    module_allowed,
    path_within,
    redact_event_payload,
    redact_spec,
    secret_looking_key,
    url_origin,
)
from nofx.settings import Settings
from nofx.store import EventStore
from nofx.store.schema import agent_capabilities, agents

SERVER_SECRET = "server-only-secret-5b1e7c"  # what an attacker wants to read
PYTHON = os.path.realpath(sys.executable)
CAPS = [{"name": "code.generate", "proficiency": 4}]


def spec(kind: str, config: dict[str, Any], name: str = "evil") -> dict[str, Any]:
    return {"name": name, "capabilities": CAPS, "provider": {"kind": kind, "config": config}}


def write_agent_row(
    tx: Any, agent_id: str, agent_spec: dict[str, Any], capability: str | None = "code.generate"
) -> None:
    """An agent as a registry that allowed it (or a hand-edited database) left it: a row, no check."""
    now = utcnow()
    tx.conn.execute(
        insert(agents).values(
            agent_id=agent_id,
            tenant_id="alpha",
            name=agent_spec["name"],
            version=1,
            status="active",
            spec=agent_spec,
            created_at=now,
            updated_at=now,
        )
    )
    if capability is not None:
        tx.conn.execute(
            insert(agent_capabilities).values(
                agent_id=agent_id, capability=capability, proficiency=4, tenant_id="alpha"
            )
        )


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return dict(response.json())


@pytest.fixture
def api(store: EventStore, nofx_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict]:
    """The API as ``nofx up`` serves it, with read/write keys for tenants alpha and beta."""
    monkeypatch.setenv("SOME_SERVER_SECRET", SERVER_SECRET)
    monkeypatch.setenv("SECRET", SERVER_SECRET)
    keys = ApiKeyService(store)
    auth = {
        f"{tenant}_{scope.value}": {
            "Authorization": f"Bearer {keys.create(tenant, scope.value, {scope}).plaintext}"
        }
        for tenant in ("alpha", "beta")
        for scope in (Scope.READ, Scope.WRITE)
    }
    with TestClient(create_app(store=store, auth_required=True)) as client:
        yield {"client": client, "auth": auth, "store": store}


def agent_events(store: EventStore) -> list[Any]:
    return [e for e in store.read_all(limit=100_000) if e.stream_type == "agent"]


def everything(store: EventStore) -> str:
    return json.dumps([e.payload for e in store.read_all(limit=100_000)], default=str)


# -- finding 1: code execution through a write key -------------------------------------------
@pytest.mark.parametrize(
    ("kind", "config", "policy_key"),
    [
        ("command", {"argv": ["sh", "-c", "id; echo $SECRET"]}, "command.allowed_executables"),
        (
            "command",
            {"argv": ["/bin/sh", "-c", "cat .nofx/nofx.db"]},
            "command.allowed_executables",
        ),
        ("python", {"callable": "builtins:eval"}, "python.allowed_callables"),
        ("python", {"callable": "os:system"}, "python.allowed_callables"),
        (
            "openai",
            {"base_url": "http://169.254.169.254/latest", "model": "m"},
            "openai.allowed_base_urls",
        ),
        (
            "openai",
            {"base_url": "https://attacker.example/v1", "model": "m", "api_key_env": "SECRET"},
            "openai.allowed_base_urls",
        ),
    ],
)
def test_a_write_key_cannot_register_code_or_outbound_calls(
    api: dict, kind: str, config: dict, policy_key: str
) -> None:
    client, auth, store = api["client"], api["auth"], api["store"]
    response = client.post("/api/v1/agents", json=spec(kind, config), headers=auth["alpha_write"])
    body = problem(response, 403)
    assert body["type"].endswith("/policy-denied")
    assert policy_key in body["detail"] and "policy.yaml" in body["detail"]
    assert client.get("/api/v1/agents", headers=auth["alpha_read"]).json()["items"] == []
    assert agent_events(store) == []


def test_an_allowed_host_does_not_make_any_server_variable_a_usable_key(
    api: dict, nofx_home: Path
) -> None:
    (nofx_home / "policy.yaml").write_text(
        "openai:\n  allowed_base_urls: [https://api.example.com]\n"
        "secrets:\n  allowed_env: [OPENAI_API_KEY]\n"
    )
    config = {"base_url": "https://api.example.com/v1", "model": "m"}
    client, auth = api["client"], api["auth"]
    denied = client.post(
        "/api/v1/agents",
        json=spec("openai", {**config, "api_key_env": "SOME_SERVER_SECRET"}),
        headers=auth["alpha_write"],
    )
    assert "secrets.allowed_env" in problem(denied, 403)["detail"]
    allowed = client.post(
        "/api/v1/agents",
        json=spec("openai", {**config, "api_key_env": "OPENAI_API_KEY"}, name="ok"),
        headers=auth["alpha_write"],
    )
    assert allowed.status_code == 201, allowed.text


def test_updating_an_agent_into_a_command_is_refused_too(api: dict) -> None:
    client, auth = api["client"], api["auth"]
    created = client.post(
        "/api/v1/agents", json=spec("simulated", {}, name="sim"), headers=auth["alpha_write"]
    ).json()
    response = client.put(
        f"/api/v1/agents/{created['agent_id']}",
        json=spec("command", {"argv": ["sh", "-c", "id"]}, name="sim"),
        headers=auth["alpha_write"],
    )
    assert "command.allowed_executables" in problem(response, 403)["detail"]
    again = client.get(f"/api/v1/agents/{created['agent_id']}", headers=auth["alpha_read"])
    assert again.json()["provider"]["kind"] == "simulated" and again.json()["version"] == 1


@pytest.mark.parametrize(
    "config",
    [
        {"argv": "sh -c id"},
        {"argv": []},
        {"argv": [PYTHON], "stdin": "file"},
        {"argv": [PYTHON], "typo": 1},
    ],
)
def test_a_malformed_command_spec_is_422(api: dict, config: dict) -> None:
    response = api["client"].post(
        "/api/v1/agents", json=spec("command", config), headers=api["auth"]["alpha_write"]
    )
    assert problem(response, 422)["type"].endswith("/invalid-provider-config")


def test_an_agent_stored_before_the_policy_changed_cannot_run(api: dict, store: EventStore) -> None:
    """Written by a registry that allowed it (an old policy, or straight into the DB)."""
    permissive = OperatorPolicy(
        command=CommandPolicy(
            allowed_executables=frozenset({os.path.realpath("/bin/sh")}), allow_inherit_env=True
        )
    )
    AgentRegistry(store, policy=permissive).register(
        AgentSpec.model_validate(
            {
                **spec("command", {"argv": ["sh", "-c", "id; echo $SECRET"], "inherit_env": True}),
                "tenant_id": "alpha",
            }
        )
    )
    client, auth = api["client"], api["auth"]
    session = client.post(
        "/api/v1/orchestration/sessions",
        json={"task": {"prompt": "go", "capability": "code.generate"}, "max_attempts": 2},
        headers=auth["alpha_write"],
    ).json()
    runtime = Runtime(store, config=RuntimeConfig(time_scale=0.0))  # this process's policy
    summary = _run(runtime)
    assert summary.failed == 1
    done = client.get(
        f"/api/v1/orchestration/sessions/{session['session_id']}", headers=auth["alpha_read"]
    ).json()
    assert done["status"] == SessionStatus.FAILED.value
    failures = [e for e in store.read_all(limit=10_000) if e.type == "StepFailed"]
    assert failures and {e.payload["error.type"] for e in failures} == {"policy_denied"}
    assert SERVER_SECRET not in everything(store)
    assert "uid=" not in everything(store)


def test_an_eval_agent_written_straight_into_the_database_cannot_run(
    api: dict, store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No event, no registry: a row in ``agents``. The prompt would print the secret if run."""
    evil = {**spec("python", {"callable": "builtins:eval"}), "tenant_id": "alpha"}
    with store.transaction() as tx:
        write_agent_row(tx, "agt_evil", evil)
    prompt = "__import__('os').environ['SOME_SERVER_SECRET']"
    api["client"].post(
        "/api/v1/orchestration/sessions",
        json={"task": {"prompt": prompt, "capability": "code.generate"}, "max_attempts": 1},
        headers=api["auth"]["alpha_write"],
    ).raise_for_status()
    summary = _run(Runtime(store, config=RuntimeConfig(time_scale=0.0)))
    assert summary.failed == 1
    failures = [e for e in store.read_all(limit=10_000) if e.type == "StepFailed"]
    assert [e.payload["error.type"] for e in failures] == ["policy_denied"]
    assert SERVER_SECRET not in everything(store)
    # control: the same row under a policy that allows eval really would leak it
    monkeypatch.setenv("NOFX_POLICY_PYTHON_ALLOWED_CALLABLES", "builtins:eval")
    api["client"].post(
        "/api/v1/orchestration/sessions",
        json={"task": {"prompt": prompt, "capability": "code.generate"}, "max_attempts": 1},
        headers=api["auth"]["alpha_write"],
    ).raise_for_status()
    assert _run(Runtime(store, config=RuntimeConfig(time_scale=0.0))).succeeded == 1
    assert SERVER_SECRET in everything(store)


def _run(runtime: Runtime) -> Any:
    import asyncio

    return asyncio.run(runtime.run_pending())


def test_an_allowed_command_runs_and_the_secret_it_echoes_is_redacted(
    api: dict, store: EventStore, nofx_home: Path
) -> None:
    (nofx_home / "policy.yaml").write_text(
        f"command:\n  allowed_executables: [{json.dumps(PYTHON)}]\n"
        "secrets:\n  allowed_env: [SOME_SERVER_SECRET]\n"
    )
    code = "import os; print('the key is', os.environ['AGENT_KEY'])"
    config = {"argv": [PYTHON, "-c", code], "secret_env": {"AGENT_KEY": "env:SOME_SERVER_SECRET"}}
    client, auth = api["client"], api["auth"]
    created = client.post(
        "/api/v1/agents", json=spec("command", config, name="local"), headers=auth["alpha_write"]
    )
    assert created.status_code == 201, created.text
    session = client.post(
        "/api/v1/orchestration/sessions",
        json={"task": {"prompt": "go", "capability": "code.generate"}},
        headers=auth["alpha_write"],
    ).json()
    summary = _run(Runtime(store, config=RuntimeConfig(time_scale=0.0)))
    assert summary.succeeded == 1
    sid = session["session_id"]
    done = client.get(f"/api/v1/orchestration/sessions/{sid}", headers=auth["alpha_read"]).json()
    assert done["output"] == "the key is [REDACTED:SOME_SERVER_SECRET]"
    events = client.get(
        f"/api/v1/orchestration/sessions/{sid}/events", headers=auth["alpha_read"]
    ).text
    assert SERVER_SECRET not in events and SERVER_SECRET not in everything(store)
    # tenant beta neither sees the agent nor can use it
    assert client.get("/api/v1/agents", headers=auth["beta_read"]).json()["items"] == []
    theirs = client.post(
        "/api/v1/orchestration/sessions",
        json={"task": {"prompt": "go", "capability": "code.generate"}},
        headers=auth["beta_write"],
    )
    assert problem(theirs, 422)["type"].endswith("/unknown-capability")


# -- secrets are references, never stored inline ---------------------------------------------
@pytest.mark.parametrize(
    ("kind", "config"),
    [
        (
            "openai",
            {"base_url": "https://api.example.com/v1", "model": "m", "api_key": "sk-inline-77"},
        ),
        (
            "openai",
            {
                "base_url": "https://api.example.com/v1",
                "model": "m",
                "headers": {"Authorization": "Bearer sk-inline-77"},
            },
        ),
        ("command", {"argv": [PYTHON], "env": {"GITHUB_TOKEN": "sk-inline-77"}}),
        ("simulated", {"password": "sk-inline-77"}),
    ],
)
def test_an_inline_secret_is_422_and_points_to_references(
    api: dict, kind: str, config: dict
) -> None:
    client, auth, store = api["client"], api["auth"], api["store"]
    response = client.post("/api/v1/agents", json=spec(kind, config), headers=auth["alpha_write"])
    body = problem(response, 422)
    assert body["type"].endswith("/inline-secret")
    assert "api_key_env" in body["detail"] and "secret_ref" in body["detail"]
    assert agent_events(store) == [] and "sk-inline-77" not in everything(store)
    assert "sk-inline-77" not in response.text


def test_inline_keys_stored_before_the_fix_are_redacted_on_read(
    api: dict, store: EventStore
) -> None:
    stored = spec(
        "openai",
        {"base_url": "https://api.example.com/v1", "model": "m", "api_key": "sk-old-inline"},
        name="legacy",
    )
    with store.transaction() as tx:
        write_agent_row(tx, "agt_legacy", {**stored, "tenant_id": "alpha"})
    client, auth = api["client"], api["auth"]
    listed = client.get("/api/v1/agents", headers=auth["alpha_read"])
    one = client.get("/api/v1/agents/agt_legacy", headers=auth["alpha_read"])
    for text in (listed.text, one.text):
        assert "sk-old-inline" not in text
    assert one.json()["provider"]["config"]["api_key"] == REDACTED
    event = {"agent_id": "agt_legacy", "spec": stored}
    assert "sk-old-inline" not in json.dumps(redact_event_payload("AgentRegistered", event))


# -- the operator's CLI ----------------------------------------------------------------------
def test_the_cli_registers_local_agents_only_when_the_policy_allows_them(
    nofx_home: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from nofx.cli import app

    path = tmp_path / "agent.yaml"
    path.write_text(json.dumps(spec("command", {"argv": [PYTHON, "-c", "print(1)"]}, "local")))
    denied = CliRunner().invoke(app, ["agents", "register", str(path)])
    assert denied.exit_code == 2
    assert "command.allowed_executables" in denied.output and "policy.yaml" in denied.output
    (nofx_home / "policy.yaml").write_text(
        f"command:\n  allowed_executables: [{json.dumps(PYTHON)}]\n"
    )
    allowed = CliRunner().invoke(app, ["agents", "register", str(path)])
    assert allowed.exit_code == 0, allowed.output
    assert "registered local" in allowed.output


# -- loading the policy ----------------------------------------------------------------------
def test_no_policy_file_means_deny_all(nofx_home: Path) -> None:
    policy = load_policy(Settings.from_env().policy_file, overrides={})
    assert policy == OperatorPolicy(source=policy.source)
    assert "deny all" in policy.source


def test_the_policy_file_and_environment_overrides(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text("openai: sk-from-file\n")
    path = tmp_path / "policy.yaml"
    path.write_text(
        "command:\n"
        f"  allowed_argv_prefixes: [[{json.dumps(PYTHON)}, -m, my_agent]]\n"
        "  allowed_cwd_roots: [/srv/repos]\n"
        "python:\n  allowed_callables: ['pkg.mod:run']\n"
        "openai:\n  allowed_base_urls: [https://API.example.com/v1, http://127.0.0.1:8080]\n"
        "secrets:\n  allowed_env: [OPENAI_API_KEY]\n  file: secrets.yaml\n"
    )
    env = {
        "NOFX_POLICY_PYTHON_ALLOWED_MODULES": "my_agents, tools.agents",
        "NOFX_POLICY_COMMAND_ALLOW_INHERIT_ENV": "true",
    }
    policy = load_policy(path, env)
    assert policy.command.allowed_argv_prefixes == ((PYTHON, "-m", "my_agent"),)
    assert policy.python.allowed_modules == ("my_agents", "tools.agents")
    assert policy.command.allow_inherit_env is True
    assert policy.openai.allowed_base_urls == {
        "https://api.example.com:443",
        "http://127.0.0.1:8080",
    }
    assert dict(policy.secrets.file_values) == {"openai": "sk-from-file"}
    assert "sk-from-file" not in repr(policy)
    assert "environment overrides" in policy.source


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("openai:\n  allowed_base_urls: [http://api.example.com]\n", "plain http"),
        ("command:\n  allowed_executable: [/bin/true]\n", "allowed_executable"),
        ("python:\n  allowed_callables: [os.system]\n", "must look like"),
        ("command:\n  allowed_argv_prefixes: [[]]\n", "would allow anything"),
        ("- just a list\n", "must be a YAML mapping"),
        ("secrets:\n  file: /definitely/missing.yaml\n", "cannot read the secrets file"),
    ],
)
def test_a_bad_policy_file_is_refused_with_what_to_fix(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(PolicyFileError, match=message):
        load_policy(path, {})


def test_a_named_policy_file_that_is_missing_is_an_error(tmp_path: Path) -> None:
    env = {"NOFX_HOME": str(tmp_path), "NOFX_POLICY_FILE": str(tmp_path / "nope.yaml")}
    with pytest.raises(PolicyFileError, match="cannot read the operator policy"):
        load_policy(Settings.from_env(env).policy_file, env)


# -- the matchers: exact, no traversal, no prefix confusion (hypothesis) ---------------------
segment = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-.", min_size=1, max_size=12)
absolute = st.lists(segment.filter(lambda s: s not in (".", "..")), min_size=1, max_size=5).map(
    lambda parts: "/" + "/".join(parts)
)


@given(allowed=absolute, suffix=segment)
def test_an_allowed_executable_allows_only_itself(allowed: str, suffix: str) -> None:
    assert executable_allowed(allowed, [allowed])
    assert not executable_allowed(allowed + suffix, [allowed])  # /usr/bin/python3-evil
    assert not executable_allowed(allowed + "/" + suffix, [allowed])
    assert not executable_allowed(allowed + "/../" + suffix, [allowed])
    assert not executable_allowed(allowed.lstrip("/"), [allowed.lstrip("/")])  # relative
    traversal = f"{allowed}/../{allowed.rsplit('/', 1)[-1]}"
    assert not executable_allowed(traversal, [allowed, traversal])


def test_the_named_examples_of_prefix_confusion() -> None:
    allowed = ["/usr/bin/python3"]
    assert executable_allowed("/usr/bin/python3", allowed)
    for candidate in ("/usr/bin/python3-evil", "/usr/bin/python3/../sh", "../python3", "python3"):
        assert not executable_allowed(candidate, allowed)


@given(prefix=st.lists(segment, min_size=1, max_size=4), rest=st.lists(segment, max_size=3))
def test_an_argv_prefix_is_matched_element_by_element(prefix: list[str], rest: list[str]) -> None:
    allowed = [("/usr/bin/python3", *prefix)]
    assert argv_prefix_allowed(("/usr/bin/python3", *prefix, *rest), allowed)
    widened = (*prefix[:-1], prefix[-1] + "x")  # my_agent -> my_agentx
    assert not argv_prefix_allowed(("/usr/bin/python3", *widened, *rest), allowed)
    assert not argv_prefix_allowed(("/usr/bin/python3", *prefix[:-1]), allowed)
    assert not argv_prefix_allowed(("/usr/bin/python3-evil", *prefix), allowed)


@given(root=absolute, child=segment.filter(lambda s: s not in (".", "..")), junk=segment)
def test_a_working_directory_must_be_inside_an_allowed_root(
    root: str, child: str, junk: str
) -> None:
    assert path_within(root, [root]) and path_within(f"{root}/{child}", [root])
    assert not path_within(root + junk, [root])  # /srv/repos-evil is not in /srv/repos
    assert not path_within(f"{root}/../{child}", [root])


@given(
    module=st.from_regex(r"[a-z]{1,6}(\.[a-z]{1,6}){0,2}", fullmatch=True),
    extra=st.text(alphabet="abcxyz_0123", min_size=1, max_size=6),
)
def test_a_module_grant_covers_its_submodules_only(module: str, extra: str) -> None:
    assert module_allowed(module, [module]) and module_allowed(f"{module}.sub", [module])
    assert not module_allowed(module + extra, [module])  # tools -> toolsx
    assert not module_allowed(module, [f"{module}.{extra}"])  # a submodule grant, not its parent


def test_callable_targets_need_an_exact_entry_or_a_public_name_in_an_allowed_module() -> None:
    rules = PythonPolicy(allowed_callables=frozenset({"pkg.mod:run"}), allowed_modules=("tools",))
    assert callable_allowed("pkg.mod:run", rules) and callable_allowed("tools.x:Agent.run", rules)
    for target in ("pkg.mod:run2", "pkg.mod:run.__globals__", "tools.x:_hidden", "builtins:eval"):
        assert not callable_allowed(target, rules)
    for target in ("pkg.mod:run:x", "pkg/../mod:run", "pkg.mod:", " pkg.mod:run"):
        assert not callable_allowed(target, rules)


@given(host=st.from_regex(r"[a-z]{1,10}(\.[a-z]{2,5}){0,2}", fullmatch=True))
def test_a_base_url_matches_only_its_exact_origin(host: str) -> None:
    rules = OpenAIPolicy(allowed_base_urls=frozenset({"https://api.example.com:443"}))
    assert base_url_allowed("https://api.example.com/v1", rules)
    assert base_url_allowed("https://API.example.com:443/other", rules)
    allowed = host == "api.example.com"
    assert base_url_allowed(f"https://{host}/v1", rules) is allowed
    for url in (
        f"https://api.example.com@{host}/v1",
        f"https://api.example.com.{host}/v1",
        "http://api.example.com/v1",
        "https://api.example.com:8443/v1",
        f"https://{host}#@api.example.com/v1",
    ):
        assert not base_url_allowed(url, rules)


def test_origins_are_normalised_and_unusable_urls_are_none() -> None:
    assert url_origin("http://[::1]:8080/v1") == "http://[::1]:8080"
    assert url_origin("https://example.com./x") == "https://example.com:443"
    for bad in ("ftp://x", "https://", "https://u:p@host/", "https://host:99999/", None, "a b"):
        assert url_origin(bad) is None


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("api_key", True),
        ("apiKey", True),
        ("X-Api-Key", True),
        ("GITHUB_TOKEN", True),
        ("Authorization", True),
        ("db_password", True),
        ("client_secret", True),
        ("ssh_private_key", True),
        ("AWS_ACCESS_KEY_ID", True),
        ("DB_PWD", True),
        ("max_tokens", False),
        ("api_key_env", False),
        ("secret_ref", False),
        ("model", False),
        ("keyboard", False),
    ],
)
def test_secret_looking_keys(key: str, secret: bool) -> None:
    assert secret_looking_key(key) is secret


def test_inline_secrets_are_found_at_any_depth_except_in_simulated_skills() -> None:
    nested = {"headers": {"X-Api-Key": "k"}, "env": {"A": "b"}, "list": [{"token": "t"}]}
    assert inline_secret_paths("openai", nested) == [
        "provider.config.headers.X-Api-Key",
        "provider.config.list[0].token",
    ]
    assert inline_secret_paths("simulated", {"skill": {"auth.token": 0.9}}) == []


secret_text = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=30)


@given(secret=secret_text, before=st.text(max_size=30), after=st.text(max_size=30))
def test_the_redactor_never_lets_a_given_secret_through(
    secret: str, before: str, after: str
) -> None:
    """(Secrets are drawn without the marker's own characters, so the marker cannot spell one.)"""
    out = Redactor({"S": secret, "OTHER": secret + "x"})(before + secret + after)
    assert secret not in out and "[REDACTED:" in out


def test_secret_references_parse_strictly() -> None:
    assert SecretRef.parse("env:OPENAI_API_KEY") == SecretRef("env", "OPENAI_API_KEY")
    assert SecretRef.parse("openai") == SecretRef("file", "openai")
    for bad in ("env:", "vault:x", "env:A-B", "", None, 3):
        assert SecretRef.parse(bad) is None


def test_the_migration_scrubs_inline_keys_from_stored_specs_and_events(settings: Settings) -> None:
    """A store written before the fix: the upgrade leaves no inline key anywhere."""
    scrubbed_by_the_migration(settings.database_url)


@pytest.mark.postgres
def test_the_migration_scrubs_inline_keys_on_postgresql(pg_url: str) -> None:
    scrubbed_by_the_migration(pg_url)


def scrubbed_by_the_migration(url: str) -> None:
    from nofx.domain import NewEvent
    from nofx.store.migrate import upgrade

    old = EventStore(url, migrate=False)
    upgrade(old.engine, "0005")
    leaked = spec(
        "openai",
        {"base_url": "https://api.example.com/v1", "model": "m", "api_key": "sk-old-9c1d"},
        name="legacy",
    )
    with old.transaction() as tx:
        write_agent_row(tx, "agt_old", leaked, capability=None)
        tx.append(
            "agent-agt_old",
            "agent",
            "alpha",
            [NewEvent(type="AgentRegistered", payload={"agent_id": "agt_old", "spec": leaked})],
        )
    assert "sk-old-9c1d" in everything(old)
    upgrade(old.engine)
    assert "sk-old-9c1d" not in everything(old)
    (event,) = agent_events(old)
    assert event.payload["spec"]["provider"]["config"]["api_key"] == REDACTED
    assert event.payload["spec"]["provider"]["config"]["model"] == "m"
    with old.engine.connect() as conn:
        (stored,) = conn.execute(agents.select()).all()
    assert "sk-old-9c1d" not in json.dumps(stored.spec)
    old.dispose()


@given(
    config=st.recursive(
        st.one_of(st.text(max_size=5), st.integers()),
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.dictionaries(
                st.sampled_from(["model", "token", "apiKey", "env", "api_key_env", "x"]),
                children,
                max_size=3,
            ),
        ),
        max_leaves=12,
    ),
    kind=st.sampled_from(["openai", "command", "simulated"]),
)
def test_what_is_refused_is_exactly_what_is_redacted(config: Any, kind: str) -> None:
    """Redaction hides exactly the values registration refuses, and keeps everything else."""
    if not isinstance(config, dict):
        config = {"value": config}
    stored = {"name": "a", "provider": {"kind": kind, "config": config}}
    redacted = redact_spec(stored)["provider"]["config"]
    paths = inline_secret_paths(kind, config)
    assert (redacted != config) == bool(paths)
    assert inline_secret_paths(kind, redacted) == paths  # same keys, values replaced
    assert all(value == REDACTED for value in values_at_secret_keys(redacted, kind != "simulated"))


def values_at_secret_keys(value: Any, recursive: bool) -> list[Any]:
    out: list[Any] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if secret_looking_key(str(key)):
                out.append(item)
            elif recursive and str(key).lower() not in ("api_key_env", "secret_ref", "secret_env"):
                out.extend(values_at_secret_keys(item, recursive))
    elif isinstance(value, list) and recursive:
        for item in value:
            out.extend(values_at_secret_keys(item, recursive))
    return out


ALLOWING = OperatorPolicy(
    command=CommandPolicy(
        allowed_executables=frozenset({PYTHON, "/opt/agents/run"}), allowed_cwd_roots=("/tmp",)
    ),
    python=PythonPolicy(allowed_modules=("tools",)),
    openai=OpenAIPolicy(allowed_base_urls=frozenset({"https://api.example.com:443"})),
)
OPENAI = {"base_url": "https://api.example.com/v1", "model": "m"}


@pytest.mark.parametrize(
    ("kind", "config", "message"),
    [
        ("command", {"argv": [PYTHON], "cwd": "relative/dir"}, "cwd must be an absolute path"),
        ("command", {"argv": [PYTHON], "env": {"1BAD": "x"}}, "is not a variable name"),
        ("command", {"argv": [PYTHON], "env": {"A": 1}}, "must map names to strings"),
        ("command", {"argv": [PYTHON], "secret_env": {"1BAD": "env:X"}}, "not a variable name"),
        (
            "command",
            {"argv": [PYTHON], "secret_env": {"A": "vault:x"}},
            "must be a secret reference",
        ),
        ("command", {"argv": [PYTHON], "timeout_s": 0}, "timeout_s must be"),
        ("command", {"argv": [PYTHON], "timeout_s": True}, "timeout_s must be"),
        ("command", {"argv": ["no-such-agent-cli-xyz"]}, "was not found"),
        ("python", {"callable": "tools.x:run", "options": []}, "options must be a mapping"),
        ("openai", {**OPENAI, "api_key_env": "A", "secret_ref": "file:b"}, "not both"),
        ("openai", {**OPENAI, "api_key_env": "not a name"}, "environment variable name"),
        ("openai", {**OPENAI, "model": ""}, "model must be a model name"),
        ("openai", {**OPENAI, "base_url": "ftp://api.example.com"}, "base_url must be"),
        ("openai", {**OPENAI, "headers": ["X"]}, "headers must map"),
        ("openai", {**OPENAI, "headers": {"X-Team": "a\r\nHost: evil"}}, "no NUL, CR or LF"),
        ("command", {"argv": [PYTHON], "cwd": "/tmp/a\x00b"}, "cwd must be an absolute path"),
        ("grpc", {}, "unknown provider kind"),
        ("command", [], "must be a mapping"),
    ],
)
def test_malformed_provider_configs_are_422_with_the_field(kind: str, config: Any, message: str):
    from nofx.security.policy import ProviderConfigError, check_provider

    with pytest.raises(ProviderConfigError, match=message) as caught:
        check_provider(kind, config, ALLOWING)
    assert caught.value.http_status == 422


def test_a_path_that_exists_only_where_the_workers_run_is_matched_as_written() -> None:
    from nofx.security.policy import check_provider

    check_provider("command", {"argv": ["/opt/agents/run", "--fast"]}, ALLOWING)
    check_provider("command", {"argv": [PYTHON], "cwd": "/tmp/work"}, ALLOWING)
    check_provider("python", {"callable": "tools.x:run", "options": {"a": 1}}, ALLOWING)


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("secrets:\n  allowed_env: [not-a-name]\n", {}, "not a variable name"),
        ("python:\n  allowed_modules: [bad-module]\n", {}, "not a module name"),
        ("command:\n  allowed_cwd_roots: [relative]\n", {}, "must be absolute"),
        ("openai:\n  allowed_base_urls: [not a url]\n", {}, "is not an http"),
        ("command:\n  allowed_executables: [no-such-agent-cli-xyz]\n", {}, "not found on PATH"),
        ("command: [1]\n", {"NOFX_POLICY_COMMAND_ALLOWED_ENV": "A"}, "must be a mapping"),
        ("", {"NOFX_POLICY_COMMAND_ALLOWED_ARGV_PREFIXES": "[[oops"}, "is not valid JSON"),
    ],
)
def test_more_bad_policies_are_refused(tmp_path: Path, text: str, env: dict, message: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(PolicyFileError, match=message):
        load_policy(path, env)


def test_json_overrides_and_an_empty_secrets_file(tmp_path: Path) -> None:
    (tmp_path / "secrets.yaml").write_text("")
    env = {
        "NOFX_POLICY_COMMAND_ALLOWED_ARGV_PREFIXES": json.dumps([[PYTHON, "-m", "agent"]]),
        "NOFX_POLICY_SECRETS_FILE": str(tmp_path / "secrets.yaml"),
    }
    policy = load_policy(None, env)
    assert policy.command.allowed_argv_prefixes == ((PYTHON, "-m", "agent"),)
    assert len(policy.secrets.file_values) == 0 and policy.secrets.file is not None
    bad = tmp_path / "bad-secrets.yaml"
    bad.write_text("[1, 2]\n")
    with pytest.raises(PolicyFileError, match="must map names"):
        load_policy(None, {"NOFX_POLICY_SECRETS_FILE": str(bad)})


def test_a_broken_policy_refuses_real_agents_but_not_simulated_ones(
    store: EventStore, nofx_home: Path
) -> None:
    (nofx_home / "policy.yaml").write_text("command:\n  allowed_executable: [/bin/true]\n")
    registry = AgentRegistry(store)
    registry.register(AgentSpec.model_validate(spec("simulated", {}, name="sim")))
    with pytest.raises(PolicyFileError, match="allowed_executable"):
        registry.register(AgentSpec.model_validate(spec("python", {"callable": "tools.x:run"})))


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
        st.sampled_from(
            ["/bin/sh", "/", "/a\x00b", "env:A", "file:b", "https://x", "a:b", "\x00", "a\r\nb"]
        ),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=8), st.just("X\x00")), children, max_size=3),
    ),
    max_leaves=10,
)
config_keys = st.sampled_from(
    [
        "argv",
        "cwd",
        "env",
        "secret_env",
        "stdin",
        "timeout_s",
        "inherit_env",
        "callable",
        "options",
        "base_url",
        "model",
        "api_key_env",
        "secret_ref",
        "headers",
    ]
)


@given(
    kind=st.sampled_from(["simulated", "command", "python", "openai"]),
    config=st.dictionaries(config_keys, json_values, max_size=5),
)
def test_any_provider_config_is_allowed_or_refused_never_a_crash(kind: str, config: dict) -> None:
    """Whatever a tenant sends, the answer is a 403/422 NofxError, never a 500."""
    from nofx.errors import NofxError
    from nofx.security.policy import check_provider

    try:
        check_provider(kind, config, ALLOWING)
    except NofxError as exc:
        assert exc.http_status in (403, 422)
