-- Workflow stream events: change sets accepted for a running workflow (WorkflowAdapted) and
-- step estimates learned from finished runs (EstimatesLearned).
select
    position,
    stream_id,
    tenant_id,
    seq,
    event_type,
    occurred_at,
    {{ nofx.json_text('payload', 'session_id') }} as session_id,
    {{ nofx.json_array_length('payload', 'changes') }} as changes,
    {{ nofx.json_array_length('payload', 'started_steps') }} as steps_started_before,
    {{ nofx.json_text('payload', 'reason') }} as reason,
    {{ nofx.json_array_length('payload', 'stats') }} as learned_capabilities,
    {{ nofx.json_number('payload', 'outcomes', 'bigint') }} as learned_from_outcomes
from {{ ref('stg_events') }}
where stream_type = 'workflow'
