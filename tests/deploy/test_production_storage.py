"""The data platform on production storage: Dagster's instance and MLflow's tracking store on PostgreSQL."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.postgres


def test_dagster_instance_runs_on_postgresql(pg_url: str, tmp_path: Path, monkeypatch) -> None:
    import dagster as dg

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy/dagster/dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv(
        "NOFX_DAGSTER_POSTGRES_URL", pg_url.replace("postgresql://", "postgresql+psycopg2://", 1)
    )

    @dg.asset
    def probe() -> int:
        return 42

    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = dg.materialize([probe], instance=instance)
        assert result.success
        runs = instance.get_runs()
        assert len(runs) == 1 and runs[0].run_id == result.run_id
        assert instance.get_latest_materialization_event(dg.AssetKey("probe")) is not None


def test_mlflow_tracks_and_registers_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    import mlflow
    from mlflow import MlflowClient

    uri = pg_url.replace("postgresql://", "postgresql+psycopg2://", 1)
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.create_experiment(
            "pg-probe", artifact_location=str(tmp_path / "artifacts")
        )
        with mlflow.start_run(experiment_id=experiment) as run:
            mlflow.log_metric("auc", 0.9)
        client = MlflowClient(uri)
        client.create_registered_model("probe-model")
        version = client.create_model_version(
            "probe-model", f"runs:/{run.info.run_id}/model", run.info.run_id
        )
        client.set_registered_model_alias("probe-model", "champion", version.version)
        assert (
            client.get_model_version_by_alias("probe-model", "champion").version == version.version
        )
        assert client.get_run(run.info.run_id).data.metrics["auc"] == 0.9
    finally:
        mlflow.set_tracking_uri(None)
