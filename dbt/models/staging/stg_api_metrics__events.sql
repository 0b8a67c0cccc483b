-- API latency windows: one ApiLatencyWindow per API process per minute.
select
    position,
    stream_id,
    tenant_id,
    seq,
    event_type,
    occurred_at,
    {{ nofx.json_text('payload', 'source') }} as source,
    {{ nofx.json_number('payload', 'window_s') }} as window_s,
    {{ nofx.json_number('payload', 'requests', 'bigint') }} as requests,
    {{ nofx.json_number('payload', 'server_errors', 'bigint') }} as server_errors,
    {{ nofx.json_number('payload', 'p50_ms') }} as p50_ms,
    {{ nofx.json_number('payload', 'p95_ms') }} as p95_ms,
    {{ nofx.json_number('payload', 'p99_ms') }} as p99_ms
from {{ ref('stg_events') }}
where stream_type = 'api_metrics'
