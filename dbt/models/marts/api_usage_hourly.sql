-- API usage by tenant, key, endpoint and hour (user behaviour analytics): the sum of the
-- ApiUsageCounted buckets the API writes (one per bucket per flush).
select
    tenant_id,
    key_id,
    method,
    route,
    hour,
    cast(sum(requests) as bigint) as requests,
    cast(sum(client_errors) as bigint) as client_errors,
    cast(sum(server_errors) as bigint) as server_errors,
    sum(total_ms) / nullif(sum(requests), 0) as mean_ms
from {{ ref('stg_api_usage__events') }}
where event_type = 'ApiUsageCounted'
group by tenant_id, key_id, method, route, hour
