-- One row per planned step of each workflow request, its step spec parsed once. Defaults
-- stay null here; the workflow_plans mart fills the workflow model's.
with requested as (
    select session_id, tenant_id, occurred_at, workflow_name, workflow_steps_json
    from {{ ref('stg_session__events') }}
    where event_type = 'SessionRequested' and pattern = 'workflow'
),

steps as (
    select
        session_id,
        tenant_id,
        occurred_at,
        workflow_name,
        {{ nofx.json_array_elements('workflow_steps_json') }} as step_json
    from requested
)

select
    session_id,
    tenant_id,
    occurred_at as requested_at,
    workflow_name,
    {{ nofx.json_text('step_json', 'id') }} as step_id,
    {{ nofx.json_text('step_json', 'capability') }} as capability,
    {{ nofx.json_text('step_json', 'pattern') }} as pattern,
    {{ nofx.json_array_length('step_json', 'needs') }} as dependencies,
    {{ nofx.json_number('step_json', 'estimates/duration_s') }} as estimated_duration_s,
    {{ nofx.json_number('step_json', 'estimates/tokens', 'bigint') }} as estimated_tokens,
    {{ nofx.json_number('step_json', 'estimates/cost_usd') }} as estimated_cost_usd,
    {{ nofx.json_number('step_json', 'max_attempts', 'integer') }} as max_attempts,
    {{ nofx.json_number('step_json', 'priority', 'integer') }} as priority
from steps
