"""Where state lives: everything embedded sits under ``NOFX_HOME`` (default ``.nofx``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def policy_file(env: dict[str, str], home: Path) -> Path | None:
    """The operator policy (docs/security.md): ``NOFX_POLICY_FILE``, else
    ``<NOFX_HOME>/policy.yaml`` when it exists; None means the deny-all default."""
    named = env.get("NOFX_POLICY_FILE")
    if named:
        return Path(named).expanduser().resolve()
    default = home / "policy.yaml"
    return default if default.is_file() else None


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    warehouse_path: Path
    mlflow_tracking_uri: str
    dagster_home: Path
    policy_file: Path | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Read settings from the environment; every path defaults to under ``NOFX_HOME``."""
        env = dict(os.environ if env is None else env)
        home = Path(env.get("NOFX_HOME", ".nofx")).expanduser().resolve()
        database_url = env.get("NOFX_DATABASE_URL") or f"sqlite:///{home / 'nofx.db'}"
        warehouse = Path(env.get("NOFX_WAREHOUSE_PATH", str(home / "warehouse.duckdb")))
        mlflow_uri = env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}"
        dagster_home = Path(env.get("DAGSTER_HOME", str(home / "dagster")))
        return cls(
            home=home,
            database_url=database_url,
            warehouse_path=warehouse.resolve(),
            mlflow_tracking_uri=mlflow_uri,
            dagster_home=dagster_home.resolve(),
            policy_file=policy_file(env, home),
        )

    def ensure_dirs(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
        self.dagster_home.mkdir(parents=True, exist_ok=True)
        (self.home / "mlartifacts").mkdir(parents=True, exist_ok=True)

    @property
    def mlflow_artifact_root(self) -> Path:
        return self.home / "mlartifacts"
