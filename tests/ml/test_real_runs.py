"""Checks on real runs nobody here generated (../shared/data/real); skipped when absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ml.real_runs import (
    SWE_BENCH_FILE,
    TERMINAL_BENCH_FILE,
    duration_forecast_check,
    load_swe_bench,
    load_terminal_bench,
    swe_bench_failure_check,
)

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real"


def real_file(relative: Path) -> Path:
    path = REAL / relative
    if not path.exists():
        pytest.skip(
            f"{path} is absent: the real-data checks need ../shared/data/real beside the checkout"
        )
    return path


def test_swe_bench_failure_model_beats_the_per_model_base_rate() -> None:
    runs = load_swe_bench(real_file(SWE_BENCH_FILE))
    assert runs.height == 9729 and runs["repo"].null_count() == 0
    result = swe_bench_failure_check(runs)
    assert result["instances"] == 730 and result["models"] == 14
    assert result["auc"] > result["base_rate_auc"] + 0.02, result


def test_terminal_bench_duration_quantiles_cover_held_out_tasks() -> None:
    trials = load_terminal_bench(real_file(TERMINAL_BENCH_FILE))
    assert trials.height == 80
    result = duration_forecast_check(trials["agent_seconds"].to_numpy())
    assert 0.8 <= result["p90_coverage"] <= 1.0, result
    assert result["p50_pinball"] < result["p50_pinball_normal"], result


def test_duration_check_on_a_skewed_sample_beats_the_normal_curve_at_the_median() -> None:
    values = np.random.default_rng(0).lognormal(5, 1.0, 400)
    result = duration_forecast_check(values)
    assert result["p50_pinball"] < result["p50_pinball_normal"]
    assert abs(result["p90_coverage"] - 0.9) < 0.05
