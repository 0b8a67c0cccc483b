"""Great Expectations 1.x glue: run a list of expectations over a frame in an ephemeral
context, and turn the outcome into a Dagster asset check result. GE has no polars engine:
frames are converted to pandas here, at the check."""

import logging
import warnings
from dataclasses import dataclass
from typing import Any

import dagster as dg
import great_expectations as gx
import pandas as pd
import polars as pl
from great_expectations.data_context.types.base import ProgressBarsConfig


@dataclass(frozen=True)
class Validation:
    """The outcome of one suite: passed, and per failed expectation a short description."""

    passed: bool
    evaluated: int
    failures: dict[str, Any]
    rows: int


def merge(parts: list[Validation]) -> Validation:
    """One outcome from several batches of the same table (failures keep their batch)."""
    failures = {
        f"batch {i}/{key}": value
        for i, part in enumerate(parts)
        for key, value in part.failures.items()
    }
    return Validation(
        passed=all(p.passed for p in parts),
        evaluated=sum(p.evaluated for p in parts),
        failures=failures,
        rows=max((p.rows for p in parts), default=0),
    )


def _describe(result: Any) -> str:
    config = result.expectation_config
    column = config.kwargs.get("column") or config.kwargs.get("column_list") or ""
    observed = result.result.get("unexpected_count", result.result.get("observed_value"))
    return f"{config.type}({column}): unexpected={observed}"


def validate(frame: pl.DataFrame | pd.DataFrame, expectations: list[Any], name: str) -> Validation:
    """Run expectations over a whole frame in an ephemeral GE context."""
    data = frame.to_pandas() if isinstance(frame, pl.DataFrame) else frame
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        batch_definition = (
            context.data_sources.add_pandas(f"{name}_source")
            .add_dataframe_asset(name)
            .add_batch_definition_whole_dataframe("whole")
        )
        suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
        result = batch_definition.get_batch(batch_parameters={"dataframe": data}).validate(suite)
    failures: dict[str, Any] = {}
    for i, r in enumerate(result.results):
        if not r.success:
            config = r.expectation_config
            assert config is not None, "a suite's results carry their expectation"
            failures[f"{i}:{config.type}"] = _describe(r)
    return Validation(
        passed=bool(result.success),
        evaluated=len(result.results),
        failures=failures,
        rows=len(data),
    )


def check_result(validation: Validation, **metadata: Any) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=validation.passed,
        metadata={
            "rows": validation.rows,
            "expectations": validation.evaluated,
            "failed_expectations": len(validation.failures),
            "failures": dg.MetadataValue.json(validation.failures),
            **metadata,
        },
    )
