-- One row per accepted change set to a running workflow (seed table workflow_adaptations).
select
    position as adaptation_id,
    session_id as workflow_execution_id,
    tenant_id,
    occurred_at,
    seq as adaptation_number,
    changes,
    steps_started_before,
    reason
from {{ ref('stg_workflow__events') }}
where event_type = 'WorkflowAdapted'
