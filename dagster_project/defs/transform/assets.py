"""Transform: the dbt project (staging views and marts) as Dagster assets, built lazily.

The factories are cached and called only when the definitions load (the ``@dg.definitions``
below), so nothing touches dbt at import time; the manifest is parsed on first use when
missing (``lib.dbt.dbt_project``). dbt's source ``raw.raw_events`` maps to the
``raw_events`` asset, so lineage runs store -> raw -> marts.
"""

import json
from collections.abc import Iterator
from functools import cache
from typing import Any

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from dagster_project.lib.dbt import (
    DAILY_MODELS,
    daily_vars,
    dbt_build_args,
    dbt_project,
    with_column_schemas,
)
from dagster_project.lib.dbt_translator import NofxDbtTranslator
from dagster_project.lib.partitions import DAILY_PARTITIONS
from dagster_project.lib.resources import WarehouseResource


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


@dg.definitions
def dbt_models() -> dg.Definitions:
    """The whole-table models and the daily ones, each dbt test an asset check."""
    return dg.Definitions(assets=[nofx_dbt_assets(), nofx_daily_dbt_assets()])
