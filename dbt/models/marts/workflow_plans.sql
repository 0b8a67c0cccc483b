-- One row per planned step of each workflow run (seed table workflow_plans): the DAG as it
-- was requested, with each step's capability, dependencies and estimates. Defaults are the
-- workflow model's (nofx/workflows/model.py); a test compares this mart with the parser.
with requested as (
    select
        {{ nofx.json_text('payload', 'session_id') }} as workflow_execution_id,
        tenant_id,
        occurred_at as planned_at,
        {{ nofx.json_text('payload', 'request/workflow/name') }} as workflow_name,
        {{ nofx.json_text('payload', 'request/workflow/steps') }} as steps_json
    from {{ ref('stg_events') }}
    where stream_type = 'session'
        and event_type = 'SessionRequested'
        and {{ nofx.json_text('payload', 'pattern') }} = 'workflow'
),

steps as (
    select
        workflow_execution_id,
        tenant_id,
        planned_at,
        workflow_name,
        {{ nofx.json_array_elements('steps_json') }} as step_json
    from requested
)

select
    workflow_execution_id || '/' || {{ nofx.json_text('step_json', 'id') }} as workflow_plan_step_id,
    workflow_execution_id,
    tenant_id,
    workflow_name,
    {{ nofx.json_text('step_json', 'id') }} as step_id,
    {{ nofx.json_text('step_json', 'capability') }} as capability,
    coalesce({{ nofx.json_text('step_json', 'pattern') }}, 'solo') as pattern,
    coalesce({{ nofx.json_array_length('step_json', 'needs') }}, 0) as dependencies,
    coalesce({{ nofx.json_number('step_json', 'estimates/duration_s') }}, 60.0)
        as estimated_duration_s,
    coalesce({{ nofx.json_number('step_json', 'estimates/tokens', 'bigint') }}, 1000)
        as estimated_tokens,
    coalesce({{ nofx.json_number('step_json', 'estimates/cost_usd') }}, 0.0) as estimated_cost_usd,
    coalesce({{ nofx.json_number('step_json', 'max_attempts', 'integer') }}, 3) as max_attempts,
    coalesce({{ nofx.json_number('step_json', 'priority', 'integer') }}, 0) as priority,
    planned_at
from steps
