"""Settings are the one reader of the environment, and docs/configuration.md lists every
variable the code names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nofx.api.limits import ApiLimits
from nofx.security.policy import policy_from_settings
from nofx.settings import Settings
from nofx.workflows.planner import BuiltinPlanner, PlanningError, planner_from_settings

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("nofx", "dagster_project", "ml", "dashboards")
NAME = re.compile(r"\bNOFX_[A-Z0-9_]*[A-Z0-9]\b")
# the code that may touch os.environ, and why: each passes the environment on to a child
# process, sets a variable for a tool that reads it (dbt, Dagster), or reads a secret by the
# name the operator's policy allows
ENVIRON_USERS = {
    "nofx/settings.py": "the one reader of settings",
    "nofx/agents/openai.py": "an agent's API key, by the name the policy allows",
    "nofx/agents/command.py": "a command agent's secrets and PATH, as the policy allows",
    "nofx/registry.py": "PATH, to resolve a command agent's executable as it will run",
    "nofx/api/liveserver.py": "the environment of the server's own child process",
    "nofx/api/examples.py": "the recorder points its in-process API at a copied home",
    "nofx/cli/demo.py": "the environment of the pipeline's child process",
    "nofx/cli/up.py": "the environment of the servers it starts",
    "dagster_project/lib/dbt.py": "dbt's profile reads the warehouse from variables it sets",
    "dagster_project/materialize.py": "Dagster reads DAGSTER_HOME",
}


def python_files() -> list[Path]:
    return [p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))]


def test_only_settings_read_the_environment() -> None:
    touching = {
        str(p.relative_to(REPO))
        for p in python_files()
        if re.search(r"os\.environ|os\.getenv|getenv\(", p.read_text())
    }
    assert touching <= ENVIRON_USERS.keys(), sorted(touching - ENVIRON_USERS.keys())


def test_every_variable_the_code_names_is_documented() -> None:
    documented = set(NAME.findall((REPO / "docs" / "configuration.md").read_text()))
    documented |= {f"NOFX_DBT_POSTGRES_{part}" for part in ("PORT", "USER", "PASSWORD", "DB")}
    named = {n for p in python_files() for n in NAME.findall(p.read_text())}
    limits = {f"NOFX_API_{name.upper()}" for name in ApiLimits.__dataclass_fields__}
    missing = sorted(n for n in named - documented if n not in limits)
    assert not missing, f"add these to docs/configuration.md: {missing}"
    security = (REPO / "docs" / "security.md").read_text()
    assert not [n for n in sorted(limits) if n not in security]  # the limits' own table


def test_families_of_overrides_reach_their_owners_through_settings() -> None:
    env = {
        "NOFX_API_MAX_LEARN_SESSIONS": "7",
        "NOFX_API_URL": "http://api:1",  # a setting of its own, not a limit
        "NOFX_POLICY_OPENAI_ALLOWED_BASE_URLS": '["https://models.example.com"]',
        "NOFX_PLANNER": "llm",
        "NOFX_PLANNER_BASE_URL": "http://planner:1/v1",
    }
    settings = Settings.from_env(env)
    assert settings.api_limit_overrides == {"NOFX_API_MAX_LEARN_SESSIONS": "7"}
    assert ApiLimits.from_settings(settings).max_learn_sessions == 7
    policy = policy_from_settings(env)
    assert policy.openai.allowed_base_urls == {"https://models.example.com:443"}
    assert "environment overrides" in policy.source
    with pytest.raises(PlanningError, match="NOFX_PLANNER_MODEL"):
        planner_from_settings(settings)
    assert isinstance(planner_from_settings(Settings.from_env({})), BuiltinPlanner)
    shown = repr(Settings.from_env({**env, "NOFX_PLANNER_API_KEY": "sk-secret-1"}))
    assert "sk-secret-1" not in shown  # secrets stay out of logs and tracebacks
