"""The API usage page's chart data: the busiest endpoints per hour, the rest as 'other'."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from dashboards.usage_page import hourly_by_route


def test_the_busiest_routes_are_kept_and_the_rest_summed() -> None:
    t0 = datetime(2026, 3, 1)
    usage = pl.DataFrame(
        {
            "hour": [t0, t0, t0, t0 + timedelta(hours=1)],
            "route": ["/a", "/b", "/c", "/a"],
            "requests": [10, 5, 1, 7],
        }
    )
    frame = hourly_by_route(usage, top=1)
    assert frame.sort("hour", "endpoint").rows() == [
        (t0, "/a", 10),
        (t0, "other", 6),
        (t0 + timedelta(hours=1), "/a", 7),
    ]
