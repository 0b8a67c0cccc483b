-- Circuit breaker transitions per agent (BreakerTransitioned), as the runtime's workers
-- share them.
select
    position,
    stream_id,
    tenant_id,
    seq,
    event_type,
    occurred_at,
    {{ nofx.json_text('payload', 'agent_id') }} as agent_id,
    {{ nofx.json_text('payload', 'from') }} as from_state,
    {{ nofx.json_text('payload', 'to') }} as to_state,
    {{ nofx.json_text('payload', 'reason') }} as reason,
    {{ nofx.json_text('payload', 'worker_id') }} as worker_id
from {{ ref('stg_events') }}
where stream_type = 'breaker'
