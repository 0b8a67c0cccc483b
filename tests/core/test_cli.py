"""The CLI as a user types it: help, clear errors, agents, sessions, run, db, demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nofx.cli import app, ui_commands
from nofx.settings import Settings

runner = CliRunner()


def invoke(*args: str, input: str | None = None):
    return runner.invoke(app, list(args), input=input)


def test_help_explains_every_command(nofx_home: Path) -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("demo", "run", "worker", "up", "agents", "sessions", "db"):
        assert command in result.output
    assert "NOFX_HOME" in result.output


def test_python_dash_m_runs_the_cli_as_nofx_up_starts_its_worker(nofx_home: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "nofx.cli", "where"],
        # wide: Rich wraps a long NOFX_HOME at the terminal's width
        env={**os.environ, "PYTHONPATH": str(repo), "COLUMNS": "400"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert str(nofx_home) in done.stdout


def test_register_list_remove_agents_from_yaml(nofx_home: Path, tmp_path: Path) -> None:
    spec = tmp_path / "agents.yaml"
    spec.write_text(
        "agents:\n"
        "  - name: coder\n"
        "    capabilities: [{name: code.generate, proficiency: 4}]\n"
        "    pricing: {input_per_1k_tokens: 0.001}\n"
    )
    result = invoke("agents", "register", str(spec))
    assert result.exit_code == 0, result.output
    assert "registered coder" in result.output
    listed = invoke("agents", "list", "--json")
    agents = json.loads(listed.output)
    assert [a["name"] for a in agents] == ["coder"]
    again = invoke("agents", "register", str(spec))
    assert again.exit_code == 2 and "already registered" in again.output
    assert "1 agents" in invoke("agents", "list").output
    assert invoke("agents", "remove", agents[0]["agent_id"]).exit_code == 0
    assert invoke("agents", "remove", "agt_missing").exit_code == 2


def test_malformed_spec_is_refused_with_the_field_named(nofx_home: Path) -> None:
    result = invoke(
        "agents",
        "register",
        "-",
        input='{"name": "x", "capabilities": [{"name": "a.b", "proficiency": 7}]}',
    )
    assert result.exit_code == 2
    assert "capabilities.0.proficiency" in result.output
    assert "Agent list" not in result.output
    missing = invoke("agents", "register", "/no/such/file.yaml")
    assert missing.exit_code == 2 and "cannot read" in missing.output


def test_submit_run_list_show_sessions(nofx_home: Path) -> None:
    invoke(
        "agents",
        "register",
        "-",
        input='{"name": "c", "capabilities": [{"name": "code.generate"}], '
        '"provider": {"config": {"latency_median_ms": 1}}}',
    )
    result = invoke(
        "sessions", "submit", "--capability", "code.generate", "--prompt", "hello", "--run"
    )
    assert result.exit_code == 0, result.output
    session_id = result.output.split("requested session ")[1].split()[0]
    assert invoke("sessions", "list").exit_code == 0
    shown = invoke("sessions", "show", session_id)
    assert "SessionRequested" in shown.output and "StepStarted" in shown.output
    assert invoke("sessions", "show", "ses_nope").exit_code == 2
    bad = invoke("sessions", "submit", "--capability", "code.generat", "--prompt", "x")
    assert bad.exit_code == 2 and "did you mean code.generate" in bad.output
    invoke("sessions", "submit", "--capability", "code.generate", "--prompt", "later")
    ran = invoke("run", "--time-scale", "0")
    assert ran.exit_code == 0 and "ran 1 sessions" in ran.output


def test_db_upgrade_and_where(nofx_home: Path) -> None:
    result = invoke("db", "upgrade")
    assert result.exit_code == 0 and "revision" in result.output
    assert str(nofx_home) in invoke("where").output


def test_demo_without_pipeline_prints_a_summary(nofx_home: Path) -> None:
    result = invoke("demo", "--sessions", "20", "--time-scale", "0", "--no-pipeline", "--days", "0")
    assert result.exit_code == 0, result.output
    assert "sessions run" in result.output and "20" in result.output
    assert "simulated" in result.output
    # a second demo reuses the fleet instead of failing on duplicate names
    assert (
        invoke(
            "demo", "--sessions", "5", "--time-scale", "0", "--no-pipeline", "--days", "0"
        ).exit_code
        == 0
    )


def test_worker_exits_after_idle_polls(nofx_home: Path) -> None:
    result = invoke("worker", "--poll-s", "0", "--max-idle-polls", "1", "--time-scale", "0")
    assert result.exit_code == 0 and "polling sqlite store" in result.output


@pytest.mark.parametrize("name", ["api", "dagster", "streamlit", "mlflow"])
def test_up_serves_every_ui_on_loopback(nofx_home: Path, name: str) -> None:
    commands = ui_commands(Settings.from_env())
    assert "127.0.0.1" in commands[name]


def test_up_ports_and_api_url_come_from_settings(tmp_path: Path) -> None:
    env = {"NOFX_HOME": str(tmp_path), "NOFX_API_PORT": "8080", "NOFX_MLFLOW_PORT": "5001"}
    settings = Settings.from_env(env)
    assert settings.ui_ports == {"api": 8080, "dagster": 3000, "streamlit": 8501, "mlflow": 5001}
    assert settings.api_url == "http://127.0.0.1:8080"  # the dashboards follow the API's port
    commands = ui_commands(settings)
    assert commands["api"][commands["api"].index("--port") + 1] == "8080"
    assert commands["mlflow"][commands["mlflow"].index("--port") + 1] == "5001"
    named = Settings.from_env({**env, "NOFX_API_URL": "http://api.internal:9000"})
    assert named.api_url == "http://api.internal:9000"


def test_keys_create_list_revoke(nofx_home: Path) -> None:
    created = invoke("keys", "create", "--name", "ci", "--scope", "read", "--scope", "write")
    assert created.exit_code == 0, created.output
    secret = next(line for line in created.output.splitlines() if line.startswith("nofx_"))
    key_id = secret.split("_")[1]
    listed = invoke("keys", "list")
    assert key_id in listed.output and secret not in listed.output
    assert invoke("keys", "revoke", key_id).exit_code == 0
    assert invoke("keys", "create", "--name", "x", "--scope", "root").exit_code == 2
    assert invoke("keys", "revoke", "nope").exit_code == 2


def test_pools_set_and_list_with_decisions(nofx_home: Path) -> None:
    assert invoke("pools", "list").output.startswith("no pools yet")
    assert (
        invoke(
            "demo", "--sessions", "120", "--time-scale", "0.01", "--no-pipeline", "--days", "0"
        ).exit_code
        == 0
    )
    listed = invoke("pools", "list", "--decisions", "5")
    assert listed.exit_code == 0, listed.output
    assert "configured at 1 (1..6 replicas)" in listed.output  # the demo gives its fleet pools
    agent_id = json.loads(invoke("agents", "list", "--json").output)[0]["agent_id"]
    changed = invoke(
        "pools", "set", agent_id, "--min", "2", "--max", "4", "--target", "0.5", "--replicas", "2"
    )
    assert changed.exit_code == 0, changed.output
    assert "2 replicas" in changed.output and "scales 2..4 at 50% busy" in changed.output
    refused = invoke("pools", "set", agent_id, "--min", "5", "--max", "2")
    assert refused.exit_code == 2 and "above max_replicas" in refused.output
    assert invoke("pools", "set", "agt_nope").exit_code == 2


def test_workflow_validate_analyze_plan_and_run(nofx_home: Path, tmp_path: Path) -> None:
    trace = Path(__file__).resolve().parents[1] / "data" / "wfcommons"
    montage = next(trace.glob("montage*.json"))
    analyzed = invoke("workflow", "analyze", str(montage), "--workers", "100000", "--json")
    assert analyzed.exit_code == 0, analyzed.output
    numbers = json.loads(analyzed.output)
    # unlimited workers: the planned makespan is the critical path of the measured runtimes
    assert numbers["planned_makespan_s"] == pytest.approx(21.385, abs=1e-3)
    assert numbers["lower_bound_s"] == pytest.approx(numbers["critical_path_s"])
    bad = tmp_path / "cycle.yaml"
    bad.write_text(
        "name: c\nsteps:\n  - {id: a, capability: code.generate, needs: [b]}\n"
        "  - {id: b, capability: code.generate, needs: [a]}\n"
    )
    refused = invoke("workflows", "validate", str(bad))
    assert refused.exit_code == 2 and "cycle" in refused.output
    assert (
        invoke(
            "demo", "--sessions", "10", "--time-scale", "0", "--no-pipeline", "--days", "0"
        ).exit_code
        == 0
    )
    planned = invoke("workflows", "plan", "fix the login bug", "--require", "code.review")
    assert planned.exit_code == 0, planned.output
    plan = tmp_path / "plan.yaml"
    plan.write_text(planned.stdout)
    assert invoke("workflows", "validate", str(plan)).exit_code == 0
    ran = invoke("workflows", "run", str(plan), "--time-scale", "0")
    assert ran.exit_code in (0, 1), ran.output  # the simulated agents may fail a step
    assert "session ses_" in ran.output
    assert invoke("workflows", "plan", "x y z", "--require", "sql.write").exit_code == 2


def test_a_real_trace_replays_on_simulated_agents(nofx_home: Path) -> None:
    trace = Path(__file__).resolve().parents[1] / "data" / "wfcommons"
    sarek = next(trace.glob("sarek*.json"))
    refused = invoke("workflow", "run", str(sarek), "--time-scale", "0")
    said = " ".join(refused.output.split())  # the console wraps long lines
    assert refused.exit_code == 2 and "which no agent offers" in said
    assert "add --simulate-missing" in said
    ran = invoke("workflow", "run", str(sarek), "--time-scale", "0", "--simulate-missing")
    assert ran.exit_code == 0, ran.output
    assert "succeeded" in ran.output
    listed = json.loads(invoke("agents", "list", "--json").output)
    assert listed and all(a["labels"].get("replay") == "workflow" for a in listed)


def test_up_queues_dagster_runs_one_at_a_time_unless_configured(tmp_path: Path) -> None:
    import yaml

    from nofx.cli import ensure_dagster_instance

    fresh = yaml.safe_load(ensure_dagster_instance(tmp_path).read_text())
    assert fresh["telemetry"] == {"enabled": False}
    assert fresh["run_coordinator"]["config"] == {"max_concurrent_runs": 1}
    assert fresh["run_retries"] == {"enabled": True, "max_retries": 2}
    assert yaml.safe_load(ensure_dagster_instance(tmp_path).read_text()) == fresh  # idempotent
    chosen = tmp_path / "chosen"
    chosen.mkdir()
    (chosen / "dagster.yaml").write_text(
        "run_coordinator:\n  module: m\n  class: C\ntelemetry:\n  enabled: true\n"
    )
    kept = yaml.safe_load(ensure_dagster_instance(chosen).read_text())
    assert kept == {
        "run_coordinator": {"module": "m", "class": "C"},
        "telemetry": {"enabled": True},
    }
