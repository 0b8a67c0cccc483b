"""The dbt project (staging views and marts) as Dagster assets, built lazily.

``nofx_dbt_assets()`` is a cached factory: nothing touches dbt at import time, and the
manifest is parsed on first use when missing (see ``resources.dbt_project``). dbt's source
``raw.raw_events`` maps to the ``raw_events`` asset, so lineage runs store -> raw -> marts.
"""

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets

from dagster_project.defs.checks import dbt_test_description, with_column_schemas
from dagster_project.resources import WarehouseResource, dbt_project
from nofx.settings import Settings

TRANSFORM_GROUP = "transform"
DAILY_GROUP = "daily"
# models rebuilt one UTC day at a time (time-based facts); everything else is built whole
DAILY_MODELS = ("agent_performance_daily",)


def partition_start(first_event_at: datetime | None, today: date) -> str:
    """The first daily partition: the UTC day of the first event, today for an empty store.

    Starting at a fixed date showed hundreds of "missing" partitions that never had data.
    """
    if first_event_at is None:
        return today.isoformat()
    if first_event_at.tzinfo is not None:
        first_event_at = first_event_at.astimezone(UTC)
    return min(first_event_at.date(), today).isoformat()


def first_event_at(database_url: str) -> datetime | None:
    """When the store's first event happened; None when the store is missing, empty or
    unreadable (Dagster must still load, so this never raises)."""
    if database_url.startswith("sqlite"):
        path = database_url.split("///", 1)[-1]
        if not path or path == ":memory:" or not Path(path).exists():
            return None
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            value = conn.execute(sa.text("select min(occurred_at) from events")).scalar()
    except sa.exc.SQLAlchemyError:
        return None
    finally:
        engine.dispose()
    if isinstance(value, str):  # SQLite returns the stored text
        value = datetime.fromisoformat(value)
    return value if isinstance(value, datetime) else None


DAILY_PARTITIONS = dg.DailyPartitionsDefinition(
    start_date=partition_start(
        first_event_at(Settings.from_env().database_url), datetime.now(UTC).date()
    ),
    end_offset=1,
    timezone="UTC",  # today's partition fills live
)


class NofxDbtTranslator(DagsterDbtTranslator):
    """Sources are keyed by table name (raw_events); models keep their name, in one group."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return dg.AssetKey(dbt_resource_props["name"])
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return DAILY_GROUP if dbt_resource_props["name"] in DAILY_MODELS else TRANSFORM_GROUP

    def get_asset_check_spec(
        self,
        asset_spec: dg.AssetSpec,
        manifest: Mapping[str, Any],
        unique_id: str,
        project: Any,
    ) -> dg.AssetCheckSpec | None:
        """dbt tests as checks, each with a sentence saying what it checks."""
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        if spec is None or spec.description:
            return spec
        test = manifest.get("nodes", {}).get(unique_id, {})
        return spec._replace(description=dbt_test_description(test))


def dbt_build_args(full_refresh: bool = False) -> list[str]:
    """The dbt command the assets run: build models and their tests together."""
    return ["build", *(["--full-refresh"] if full_refresh else [])]


class DbtBuildConfig(dg.Config):
    full_refresh: bool = False


@cache
def nofx_dbt_assets() -> dg.AssetsDefinition:
    project = dbt_project()

    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        dagster_dbt_translator=NofxDbtTranslator(),
        name="nofx_dbt",
        exclude=" ".join(DAILY_MODELS),
    )
    def nofx_dbt(
        context: dg.AssetExecutionContext,
        config: DbtBuildConfig,
        dbt: DbtCliResource,
        warehouse: WarehouseResource,
    ) -> Iterator[Any]:
        with warehouse.dbt_env():
            yield from with_column_schemas(
                dbt.cli(dbt_build_args(config.full_refresh), context=context).stream(), warehouse
            )

    return nofx_dbt


def daily_vars(start: datetime, end: datetime) -> dict[str, str]:
    """The dbt vars of a run over the days [start, end): naive UTC timestamps."""
    return {
        "min_day": start.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" "),
        "max_day": end.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" "),
    }


@cache
def nofx_daily_dbt_assets() -> dg.AssetsDefinition:
    project = dbt_project()

    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        dagster_dbt_translator=NofxDbtTranslator(),
        name="nofx_dbt_daily",
        select=" ".join(DAILY_MODELS),
        partitions_def=DAILY_PARTITIONS,
        backfill_policy=dg.BackfillPolicy.single_run(),  # a range of days is one dbt run
    )
    def nofx_dbt_daily(
        context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource
    ) -> Iterator[Any]:
        window = context.partition_time_window
        args = ["build", "--vars", json.dumps(daily_vars(window.start, window.end))]
        with warehouse.dbt_env():
            yield from with_column_schemas(dbt.cli(args, context=context).stream(), warehouse)

    return nofx_dbt_daily
