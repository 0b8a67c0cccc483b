-- One row per planned step of each workflow run (seed table workflow_plans): the DAG as it
-- was requested, with each step's capability, dependencies and estimates. Defaults are the
-- workflow model's (nofx/workflows/model.py); a test compares this mart with the parser.
select
    session_id || '/' || step_id as workflow_plan_step_id,
    session_id as workflow_execution_id,
    tenant_id,
    workflow_name,
    step_id,
    capability,
    coalesce(pattern, 'solo') as pattern,
    coalesce(dependencies, 0) as dependencies,
    coalesce(estimated_duration_s, 60.0) as estimated_duration_s,
    coalesce(estimated_tokens, 1000) as estimated_tokens,
    coalesce(estimated_cost_usd, 0.0) as estimated_cost_usd,
    coalesce(max_attempts, 3) as max_attempts,
    coalesce(priority, 0) as priority,
    requested_at as planned_at
from {{ ref('stg_session__workflow_steps') }}
