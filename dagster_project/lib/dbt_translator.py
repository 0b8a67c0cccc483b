"""How dbt nodes become Dagster assets: sources keyed by their table (``raw_events``, the
ingest asset), models by their name in the transform or daily group, and every dbt test a
check with a sentence saying what it checks."""

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator

from dagster_project.lib import groups
from dagster_project.lib.dbt import DAILY_MODELS


class NofxDbtTranslator(DagsterDbtTranslator):
    """Sources are keyed by table name (raw_events); models keep their name, in one group."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return dg.AssetKey(dbt_resource_props["name"])
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return groups.DAILY if dbt_resource_props["name"] in DAILY_MODELS else groups.TRANSFORM

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


def _model_of(test: dict[str, Any]) -> str:
    attached = test.get("attached_node") or ""
    return attached.rsplit(".", 1)[-1] or "the model"


def dbt_test_description(test: dict[str, Any]) -> str:
    """What a dbt data test checks, in words (its own description when schema.yml gives one)."""
    if test.get("description"):
        return str(test["description"])
    meta = test.get("test_metadata") or {}
    name, kwargs = meta.get("name", test.get("name", "test")), meta.get("kwargs") or {}
    where = f"{_model_of(test)}.{kwargs.get('column_name', test.get('column_name') or '')}"
    if name == "not_null":
        return f"dbt: {where} is never null."
    if name == "unique":
        return f"dbt: every {where} value appears once."
    if name == "accepted_values":
        values = ", ".join(str(v) for v in kwargs.get("values", []))
        return f"dbt: {where} is one of {values} (or null)."
    if name == "relationships":
        target = str(kwargs.get("to", "")).removeprefix("ref('").removesuffix("')")
        return f"dbt: every {where} exists in {target}.{kwargs.get('field')}."
    if name == "unique_combination":
        columns = ", ".join(kwargs.get("columns", []))
        return f"dbt: one row per ({columns}) in {_model_of(test)}."
    return f"dbt test {name} on {_model_of(test)}."
