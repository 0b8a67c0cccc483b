-- One row per agent-pool event (configured or scaled), with the load that drove it.
select
    position as decision_id,
    tenant_id,
    occurred_at,
    event_type,
    agent_id,
    coalesce(replicas_before, replicas) as replicas_before,
    coalesce(replicas_after, replicas) as replicas_after,
    direction,
    utilisation,
    in_flight,
    queued,
    reason
from {{ ref('stg_pool__events') }}
