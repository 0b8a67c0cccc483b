"""User behaviour analytics: insights from ``api_usage_hourly`` (the ``api_usage`` kind).

Per tenant: which endpoint carries the most traffic, which key fails most often (4xx share,
a client that keeps sending bad requests or lacks a scope), and the busiest hour of the day
(when to expect load). Pure functions over the mart's rows; the recommendations asset
publishes them with the other insights.
"""

from typing import Any

import polars as pl

MIN_REQUESTS = 20  # below this a share is noise, not an insight


def usage_insights(usage: pl.DataFrame) -> list[dict[str, Any]]:
    """Insights for one tenant's rows of api_usage_hourly."""
    total = int(usage["requests"].sum() or 0) if usage.height else 0
    if total < MIN_REQUESTS:
        return []
    out: list[dict[str, Any]] = []
    by_route = (
        usage.group_by("method", "route")
        .agg(pl.col("requests").sum())
        .sort(["requests", "route"], descending=[True, False])
    )
    top = by_route.row(0, named=True)
    share = top["requests"] / total
    out.append(
        {
            "kind": "api_usage",
            "subject": f"{top['method']} {top['route']}",
            "title": f"{share:.0%} of your API traffic is {top['method']} {top['route']}",
            "detail": f"{top['requests']} of {total} requests; the next endpoints: "
            + ", ".join(f"{r['method']} {r['route']}" for r in by_route.slice(1, 3).to_dicts()),
            "value": share,
            "evidence": {"requests": top["requests"], "total": total},
        }
    )
    by_key = (
        usage.group_by("key_id")
        .agg(pl.col("requests").sum(), pl.col("client_errors").sum())
        .filter(pl.col("requests") >= MIN_REQUESTS)
        .with_columns((pl.col("client_errors") / pl.col("requests")).alias("error_share"))
        .sort(["error_share", "key_id"], descending=[True, False])
    )
    if by_key.height and by_key["error_share"][0] > 0.05:
        worst = by_key.row(0, named=True)
        out.append(
            {
                "kind": "api_usage",
                "subject": f"key {worst['key_id'] or '(no key)'}",
                "title": f"key {worst['key_id'] or '(no key)'} gets {worst['error_share']:.0%} "
                "of its requests refused (4xx)",
                "detail": "check the scopes the key has and the requests its client sends",
                "value": float(worst["error_share"]),
                "evidence": {
                    "requests": worst["requests"],
                    "client_errors": worst["client_errors"],
                },
            }
        )
    by_hour = (
        usage.with_columns(pl.col("hour").dt.hour().alias("hour_of_day"))
        .group_by("hour_of_day")
        .agg(pl.col("requests").sum())
        .sort(["requests", "hour_of_day"], descending=[True, False])
    )
    peak = by_hour.row(0, named=True)
    out.append(
        {
            "kind": "api_usage",
            "subject": f"hour {peak['hour_of_day']:02d}:00 UTC",
            "title": f"your API peak is {peak['hour_of_day']:02d}:00-"
            f"{(peak['hour_of_day'] + 1) % 24:02d}:00 UTC",
            "detail": f"{peak['requests']} of {total} requests fall in that hour of the day",
            "value": peak["requests"] / total,
            "evidence": {"requests": peak["requests"], "total": total},
        }
    )
    return out
