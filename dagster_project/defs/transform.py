"""The dbt project (staging views and marts) as Dagster assets, built lazily.

``nofx_dbt_assets()`` is a cached factory: nothing touches dbt at import time, and the
manifest is parsed on first use when missing (see ``resources.dbt_project``). dbt's source
``raw.raw_events`` maps to the ``raw_events`` asset, so lineage runs store -> raw -> marts.
"""

from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets

from dagster_project.resources import WarehouseResource, dbt_project

TRANSFORM_GROUP = "transform"


class NofxDbtTranslator(DagsterDbtTranslator):
    """Sources are keyed by table name (raw_events); models keep their name, in one group."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return dg.AssetKey(dbt_resource_props["name"])
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return TRANSFORM_GROUP


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
    )
    def nofx_dbt(
        context: dg.AssetExecutionContext,
        config: DbtBuildConfig,
        dbt: DbtCliResource,
        warehouse: WarehouseResource,
    ) -> Iterator[Any]:
        with warehouse.dbt_env():
            yield from dbt.cli(dbt_build_args(config.full_refresh), context=context).stream()

    return nofx_dbt
