-- One row per agent-pool event (configured or scaled), with the load that drove it.
select
    position as decision_id,
    tenant_id,
    occurred_at,
    event_type,
    {{ nofx.json_text('payload', 'agent_id') }} as agent_id,
    coalesce(
        {{ nofx.json_number('payload', 'before', 'integer') }},
        {{ nofx.json_number('payload', 'replicas', 'integer') }}
    ) as replicas_before,
    coalesce(
        {{ nofx.json_number('payload', 'after', 'integer') }},
        {{ nofx.json_number('payload', 'replicas', 'integer') }}
    ) as replicas_after,
    {{ nofx.json_text('payload', 'direction') }} as direction,
    {{ nofx.json_number('payload', 'utilisation') }} as utilisation,
    {{ nofx.json_number('payload', 'in_flight', 'integer') }} as in_flight,
    {{ nofx.json_number('payload', 'queued', 'integer') }} as queued,
    {{ nofx.json_text('payload', 'reason') }} as reason
from {{ ref('stg_events') }}
where stream_type = 'pool'
