"""Custom business metrics: SQL a tenant writes over its own rows of the published marts."""

from nofx.metrics.definitions import CustomMetric, CustomMetricService
from nofx.metrics.sandbox import (
    ALLOWED_MARTS,
    MetricQueryError,
    MetricValue,
    check_metric_sql,
    run_metric,
)

__all__ = [
    "ALLOWED_MARTS",
    "CustomMetric",
    "CustomMetricService",
    "MetricQueryError",
    "MetricValue",
    "check_metric_sql",
    "run_metric",
]
