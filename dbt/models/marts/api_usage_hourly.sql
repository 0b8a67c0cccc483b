-- API usage by tenant, key, endpoint and hour (user behaviour analytics): the sum of the
-- ApiUsageCounted buckets the API writes (one per bucket per flush).
select
    tenant_id,
    {{ nofx.json_text('payload', 'key_id') }} as key_id,
    {{ nofx.json_text('payload', 'method') }} as method,
    {{ nofx.json_text('payload', 'route') }} as route,
    cast({{ nofx.json_text('payload', 'hour') }} as timestamp) as hour,
    cast(sum({{ nofx.json_number('payload', 'requests', 'bigint') }}) as bigint) as requests,
    cast(sum({{ nofx.json_number('payload', 'client_errors', 'bigint') }}) as bigint)
        as client_errors,
    cast(sum({{ nofx.json_number('payload', 'server_errors', 'bigint') }}) as bigint)
        as server_errors,
    sum({{ nofx.json_number('payload', 'total_ms') }})
        / nullif(sum({{ nofx.json_number('payload', 'requests', 'bigint') }}), 0) as mean_ms
from {{ ref('stg_events') }}
where stream_type = 'api_usage' and event_type = 'ApiUsageCounted'
group by 1, 2, 3, 4, 5
