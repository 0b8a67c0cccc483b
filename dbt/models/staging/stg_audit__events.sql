-- The API's audit trail: one ApiWrite per write request (who, what, the answer, how long).
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
    {{ nofx.json_text('payload', 'path') }} as path,
    {{ nofx.json_number('payload', 'status', 'integer') }} as status,
    {{ nofx.json_number('payload', 'duration_ms') }} as duration_ms
from {{ ref('stg_events') }}
where stream_type = 'audit'
