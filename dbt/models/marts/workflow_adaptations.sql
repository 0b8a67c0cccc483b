-- One row per accepted change set to a running workflow (seed table workflow_adaptations).
select
    position as adaptation_id,
    {{ nofx.json_text('payload', 'session_id') }} as workflow_execution_id,
    tenant_id,
    occurred_at,
    seq as adaptation_number,
    {{ nofx.json_array_length('payload', 'changes') }} as changes,
    {{ nofx.json_array_length('payload', 'started_steps') }} as steps_started_before,
    {{ nofx.json_text('payload', 'reason') }} as reason
from {{ ref('stg_events') }}
where stream_type = 'workflow' and event_type = 'WorkflowAdapted'
