-- One row per API process per minute: requests served, 5xx answers and latency quantiles.
select
    position as window_id,
    source,
    occurred_at as window_end,
    window_s,
    requests,
    server_errors,
    p50_ms,
    p95_ms,
    p99_ms
from {{ ref('stg_api_metrics__events') }}
where event_type = 'ApiLatencyWindow'
