-- API key lifecycle: created (name and scopes, never the secret) and revoked.
select
    position,
    stream_id,
    tenant_id,
    seq,
    event_type,
    occurred_at,
    {{ nofx.json_text('payload', 'key_id') }} as key_id,
    {{ nofx.json_text('payload', 'name') }} as key_name,
    {{ nofx.json_array_length('payload', 'scopes') }} as scope_count
from {{ ref('stg_events') }}
where stream_type = 'apikey'
