-- API usage buckets: one ApiUsageCounted per tenant, key, route and hour per API flush.
select
    position,
    stream_id,
    tenant_id,
    seq,
    event_type,
    occurred_at,
    {{ nofx.json_text('payload', 'key_id') }} as key_id,
    {{ nofx.json_text('payload', 'method') }} as method,
    {{ nofx.json_text('payload', 'route') }} as route,
    cast({{ nofx.json_text('payload', 'hour') }} as timestamp) as hour,
    {{ nofx.json_number('payload', 'requests', 'bigint') }} as requests,
    {{ nofx.json_number('payload', 'client_errors', 'bigint') }} as client_errors,
    {{ nofx.json_number('payload', 'server_errors', 'bigint') }} as server_errors,
    {{ nofx.json_number('payload', 'total_ms') }} as total_ms
from {{ ref('stg_events') }}
where stream_type = 'api_usage'
