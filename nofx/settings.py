"""Where state lives: everything embedded sits under ``NOFX_HOME`` (default ``.nofx``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def policy_file(env: dict[str, str], home: Path) -> Path | None:
    """The operator policy (docs/security.md): ``NOFX_POLICY_FILE``, else
    ``<NOFX_HOME>/policy.yaml`` when it exists; None means the deny-all default."""
    named = env.get("NOFX_POLICY_FILE")
    if named:
        return Path(named).expanduser().resolve()
    default = home / "policy.yaml"
    return default if default.is_file() else None


DEFAULT_UI_PORTS = {"api": 8000, "dagster": 3000, "streamlit": 8501, "mlflow": 5000}


def read_ui_ports(env: dict[str, str]) -> dict[str, int]:
    """Ports for `nofx up`; NOFX_<NAME>_PORT overrides each (e.g. NOFX_API_PORT=8080)."""
    return {
        name: int(env.get(f"NOFX_{name.upper()}_PORT", port))
        for name, port in DEFAULT_UI_PORTS.items()
    }


DBT_TARGETS = ("duckdb", "postgres")


def read_float(env: dict[str, str], name: str, default: float) -> float:
    """A number from the environment, or a message that names the variable."""
    raw = env.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number; unset it for {default:g}") from None


def read_dbt_target(env: dict[str, str]) -> str:
    """``NOFX_DBT_TARGET`` (default duckdb), one of dbt/profiles.yml's targets; it also says
    where the whole warehouse lives, not only where dbt builds."""
    target = env.get("NOFX_DBT_TARGET") or "duckdb"
    if target not in DBT_TARGETS:
        raise ValueError(
            f"NOFX_DBT_TARGET={target!r} is not a target of dbt/profiles.yml; "
            f"use one of {', '.join(DBT_TARGETS)}"
        )
    return target


def read_warehouse_url(env: dict[str, str]) -> str | None:
    """The PostgreSQL warehouse: ``NOFX_WAREHOUSE_URL``, else the ``NOFX_DBT_POSTGRES_*``
    variables dbt/profiles.yml reads (with its defaults), so dbt and Python agree."""
    if env.get("NOFX_WAREHOUSE_URL"):
        return env["NOFX_WAREHOUSE_URL"]
    if read_dbt_target(env) != "postgres":
        return None
    from urllib.parse import quote

    user = quote(env.get("NOFX_DBT_POSTGRES_USER", "nofx"), safe="")
    password = env.get("NOFX_DBT_POSTGRES_PASSWORD", "")
    auth = f"{user}:{quote(password, safe='')}" if password else user
    host = env.get("NOFX_DBT_POSTGRES_HOST", "localhost")
    port = env.get("NOFX_DBT_POSTGRES_PORT", "5432")
    db = env.get("NOFX_DBT_POSTGRES_DB", "nofx")
    return f"postgresql://{auth}@{host}:{port}/{db}"


API_LIMIT_PREFIX = "NOFX_API_"
# NOFX_API_* names that are settings of their own, not limits
NOT_API_LIMITS = frozenset(
    {"NOFX_API_URL", "NOFX_API_AUTH", "NOFX_API_PORT", "NOFX_API_CURSOR_SECRET"}
)
POLICY_PREFIX = "NOFX_POLICY_"
POLICY_FILE = "NOFX_POLICY_FILE"


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    warehouse_path: Path
    mlflow_tracking_uri: str
    dagster_home: Path
    policy_file: Path | None = None
    # the servers `nofx up` starts, and where the dashboards find the API (NOFX_API_URL)
    ui_ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_UI_PORTS), hash=False)
    api_url: str = f"http://127.0.0.1:{DEFAULT_UI_PORTS['api']}"
    # where the warehouse lives (ADR 0026): the DuckDB file, or PostgreSQL at warehouse_url
    dbt_target: str = "duckdb"
    warehouse_url: str | None = None
    # the marts' schema (NOFX_MART_SCHEMA); readers accept only a plain identifier
    mart_schema: str = "main"
    # the store's durability (NOFX_DURABILITY: full or normal; the writer validates it)
    durability: str = "full"
    # the failure model the router loads from MLflow (NOFX_ROUTING_MODEL, empty: none) and
    # how often it looks for a new version (NOFX_ROUTING_MODEL_POLL_S)
    routing_model: str = ""
    routing_model_poll_s: float = 60.0
    # how far ahead the autoscaler looks at the demand forecast (NOFX_SCALE_AHEAD_MIN)
    scale_ahead_min: float = 60.0
    # alerting: a YAML file of rules (NOFX_ALERT_RULES), a webhook for raised alerts
    # (NOFX_ALERT_WEBHOOK_URL, operator-set) and the forecast horizon (NOFX_ALERT_HORIZON_H)
    alert_rules_file: str | None = None
    alert_webhook_url: str | None = None
    alert_horizon_h: float = 24.0
    # API keys are required unless NOFX_API_AUTH=off (local experiments only)
    api_auth: bool = True
    # the key that signs the API's page cursors (NOFX_API_CURSOR_SECRET; unset: a random
    # key kept under the home, nofx/api/pagination.py)
    cursor_secret: str | None = field(default=None, repr=False)
    # the workflow planner: builtin, or llm (NOFX_PLANNER=llm) at NOFX_PLANNER_BASE_URL with
    # NOFX_PLANNER_MODEL and NOFX_PLANNER_API_KEY (nofx/workflows/planner.py)
    planner: str = "builtin"
    planner_base_url: str | None = None
    planner_model: str | None = None
    planner_api_key: str = field(default="", repr=False)
    # operator overrides that come as families, read here and parsed by their owners: the
    # API's limits (NOFX_API_<LIMIT>, nofx/api/limits.py) and the provider policy
    # (NOFX_POLICY_<SECTION>_<KEY>, nofx/security/policy/loading.py)
    api_limit_overrides: dict[str, str] = field(default_factory=dict, hash=False)
    policy_overrides: dict[str, str] = field(default_factory=dict, hash=False, repr=False)

    @property
    def warehouse_on_postgres(self) -> bool:
        return self.dbt_target == "postgres"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Read settings from the environment; every path defaults to under ``NOFX_HOME``."""
        env = dict(os.environ if env is None else env)
        home = Path(env.get("NOFX_HOME", ".nofx")).expanduser().resolve()
        database_url = env.get("NOFX_DATABASE_URL") or f"sqlite:///{home / 'nofx.db'}"
        warehouse = Path(env.get("NOFX_WAREHOUSE_PATH", str(home / "warehouse.duckdb")))
        mlflow_uri = env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}"
        dagster_home = Path(env.get("DAGSTER_HOME", str(home / "dagster")))
        ports = read_ui_ports(env)
        return cls(
            home=home,
            database_url=database_url,
            warehouse_path=warehouse.resolve(),
            mlflow_tracking_uri=mlflow_uri,
            dagster_home=dagster_home.resolve(),
            policy_file=policy_file(env, home),
            ui_ports=ports,
            api_url=env.get("NOFX_API_URL") or f"http://127.0.0.1:{ports['api']}",
            dbt_target=read_dbt_target(env),
            warehouse_url=read_warehouse_url(env),
            mart_schema=env.get("NOFX_MART_SCHEMA") or "main",
            durability=(env.get("NOFX_DURABILITY") or "full").lower(),
            routing_model=env.get("NOFX_ROUTING_MODEL", "").strip(),
            routing_model_poll_s=read_float(env, "NOFX_ROUTING_MODEL_POLL_S", 60.0),
            scale_ahead_min=read_float(env, "NOFX_SCALE_AHEAD_MIN", 60.0),
            alert_rules_file=env.get("NOFX_ALERT_RULES") or None,
            alert_webhook_url=env.get("NOFX_ALERT_WEBHOOK_URL") or None,
            alert_horizon_h=read_float(env, "NOFX_ALERT_HORIZON_H", 24.0),
            api_auth=env.get("NOFX_API_AUTH", "keys").lower() not in ("off", "0", "false", "none"),
            cursor_secret=env.get("NOFX_API_CURSOR_SECRET") or None,
            planner=env.get("NOFX_PLANNER") or "builtin",
            planner_base_url=env.get("NOFX_PLANNER_BASE_URL") or None,
            planner_model=env.get("NOFX_PLANNER_MODEL") or None,
            planner_api_key=env.get("NOFX_PLANNER_API_KEY", ""),
            api_limit_overrides={
                k: v
                for k, v in env.items()
                if k.startswith(API_LIMIT_PREFIX) and k not in NOT_API_LIMITS
            },
            policy_overrides={
                k: v for k, v in env.items() if k.startswith(POLICY_PREFIX) and k != POLICY_FILE
            },
        )

    def ensure_dirs(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
        self.dagster_home.mkdir(parents=True, exist_ok=True)
        (self.home / "mlartifacts").mkdir(parents=True, exist_ok=True)

    @property
    def mlflow_artifact_root(self) -> Path:
        return self.home / "mlartifacts"
