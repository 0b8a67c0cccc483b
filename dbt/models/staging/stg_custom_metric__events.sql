-- A tenant's custom metrics: defined (with their SQL) or deleted.
select
    position,
    stream_id,
    tenant_id,
    seq,
    event_type,
    occurred_at,
    {{ nofx.json_text('payload', 'name') }} as metric_name,
    {{ nofx.json_text('payload', 'sql') }} as metric_sql,
    {{ nofx.json_text('payload', 'description') }} as description,
    {{ nofx.json_text('payload', 'by') }} as changed_by
from {{ ref('stg_events') }}
where stream_type = 'custom_metric'
