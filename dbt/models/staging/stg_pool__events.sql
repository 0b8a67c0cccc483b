-- Agent pool events: PoolConfigured (the starting size) and PoolScaled (before, after and
-- the load that drove it).
select
    position,
    stream_id,
    tenant_id,
    seq,
    event_type,
    occurred_at,
    {{ nofx.json_text('payload', 'agent_id') }} as agent_id,
    {{ nofx.json_number('payload', 'replicas', 'integer') }} as replicas,
    {{ nofx.json_number('payload', 'before', 'integer') }} as replicas_before,
    {{ nofx.json_number('payload', 'after', 'integer') }} as replicas_after,
    {{ nofx.json_text('payload', 'direction') }} as direction,
    {{ nofx.json_number('payload', 'utilisation') }} as utilisation,
    {{ nofx.json_number('payload', 'in_flight', 'integer') }} as in_flight,
    {{ nofx.json_number('payload', 'queued', 'integer') }} as queued,
    {{ nofx.json_text('payload', 'reason') }} as reason
from {{ ref('stg_events') }}
where stream_type = 'pool'
