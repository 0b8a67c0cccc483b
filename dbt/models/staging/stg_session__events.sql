-- Session stream events, the payload parsed once into typed columns (null when absent):
-- requests, steps, selections, outcomes, agent links and workflow results.
select
    position,
    {{ nofx.json_text('payload', 'session_id') }} as session_id,
    tenant_id,
    seq,
    event_type,
    occurred_at,
    {{ nofx.json_text('payload', 'step_id') }} as step_id,
    {{ nofx.json_number('payload', 'attempt', 'integer') }} as attempt,
    {{ nofx.json_text('payload', 'agent_id') }} as agent_id,
    {{ nofx.json_number('payload', 'agent_version', 'integer') }} as agent_version,
    {{ nofx.json_text('payload', 'gen_ai.agent.name') }} as agent_name,
    {{ nofx.json_text('payload', 'gen_ai.provider.name') }} as provider_name,
    coalesce(
        {{ nofx.json_text('payload', 'capability') }},
        {{ nofx.json_text('payload', 'task.capability') }}
    ) as capability,
    {{ nofx.json_text('payload', 'pattern') }} as pattern,
    {{ nofx.json_text('payload', 'error.type') }} as error_type,
    {{ nofx.json_text('payload', 'error_class') }} as error_class,
    -- whose failure (ADR 0018); a failure written before the class existed counts as the
    -- orchestrator's, so the <1% rule never looks better for lack of a label
    case
        when event_type in ('StepFailed', 'StepAbandoned', 'SessionFailed')
            then coalesce({{ nofx.json_text('payload', 'failure_class') }}, 'orchestration')
    end as failure_class,
    {{ nofx.json_number('payload', 'gen_ai.usage.input_tokens', 'bigint') }} as input_tokens,
    {{ nofx.json_number('payload', 'gen_ai.usage.output_tokens', 'bigint') }} as output_tokens,
    {{ nofx.json_number('payload', 'cost_usd') }} as cost_usd,
    {{ nofx.json_number('payload', 'latency_ms') }} as latency_ms,
    {{ nofx.json_number('payload', 'timeout_s') }} as timeout_s,
    {{ nofx.json_number('payload', 'quality') }} as quality,
    {{ nofx.json_number('payload', 'score') }} as selection_score,
    {{ nofx.json_number('payload', 'expected_success') }} as expected_success,
    {{ nofx.json_number('payload', 'expected_cost_usd') }} as expected_cost_usd,
    {{ nofx.json_number('payload', 'candidates', 'integer') }} as candidates,
    {{ nofx.json_number('payload', 'request/task/complexity') }} as complexity,
    {{ nofx.json_number('payload', 'request/task/input_tokens', 'bigint') }}
        as requested_input_tokens,
    {{ nofx.json_number('payload', 'request/budget_usd') }} as budget_usd,
    {{ nofx.json_text('payload', 'request/optimize') }} as optimize,
    {{ nofx.json_number('payload', 'request/max_attempts', 'integer') }} as max_attempts,
    {{ nofx.json_text('payload', 'request/workflow/name') }} as workflow_name,
    {{ nofx.json_text('payload', 'request/workflow/steps') }} as workflow_steps_json,
    {{ nofx.json_number('payload', 'details/steps', 'integer') }} as steps_planned,
    {{ nofx.json_number('payload', 'details/planned_makespan_s') }} as planned_makespan_s,
    {{ nofx.json_number('payload', 'details/actual_makespan_s') }} as actual_makespan_s,
    {{ nofx.json_number('payload', 'details/planned_cost_usd') }} as planned_cost_usd,
    {{ nofx.json_text('payload', 'supervisor_agent_id') }} as supervisor_agent_id,
    {{ nofx.json_text('payload', 'worker_agent_id') }} as worker_agent_id,
    {{ nofx.json_number('payload', 'depth', 'integer') }} as delegation_depth,
    {{ nofx.json_text('payload', 'reviewer_agent_id') }} as reviewer_agent_id,
    {{ nofx.json_text('payload', 'author_agent_id') }} as author_agent_id,
    {{ nofx.json_text('payload', 'verdict') }} as verdict,
    {{ nofx.json_text('payload', 'from_agent_id') }} as from_agent_id,
    {{ nofx.json_text('payload', 'to_agent_id') }} as to_agent_id,
    {{ nofx.json_text('payload', 'item') }} as handoff_item,
    {{ nofx.json_text('payload', 'worker_id') }} as worker_id,
    {{ nofx.json_text('payload', 'message') }} as message
from {{ ref('stg_events') }}
where stream_type = 'session'
