{{
    config(
        materialized='incremental',
        unique_key='step_call_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
    )
}}
-- One row per step attempt that reached an outcome (completed, failed or abandoned):
-- what was asked, which agent (and which spec version) took it, and what happened.
-- Outcome events are immutable, so new rows are the outcomes after the last one loaded.
with outcomes as (
    select *
    from {{ ref('stg_session__events') }}
    where event_type in ('StepCompleted', 'StepFailed', 'StepAbandoned')
    {% if is_incremental() %}
        and position > (select coalesce(max(outcome_position), 0) from {{ this }})
    {% endif %}
),

started as (
    select session_id, step_id, attempt, occurred_at, agent_id, agent_version, agent_name,
        provider_name, capability, timeout_s
    from {{ ref('stg_session__events') }}
    where event_type = 'StepStarted'
),

selected as (
    select session_id, step_id, attempt, selection_score, expected_success,
        expected_cost_usd, candidates
    from {{ ref('stg_session__events') }}
    where event_type = 'AgentSelected'
),

requested as (
    select session_id, pattern, complexity, requested_input_tokens, optimize, max_attempts
    from {{ ref('stg_session__events') }}
    where event_type = 'SessionRequested'
),

specs as (
    select agent_id, version, input_per_1k_tokens, output_per_1k_tokens, per_call_usd
    from {{ ref('stg_agent__events') }}
    where event_type in ('AgentRegistered', 'AgentUpdated')
)

select
    o.session_id || '/' || o.step_id || '/' || cast(o.attempt as {{ dbt.type_string() }}) as step_call_id,
    o.position as outcome_position,
    o.session_id,
    o.tenant_id,
    o.step_id,
    o.attempt,
    coalesce(o.agent_id, s.agent_id) as agent_id,
    coalesce(o.agent_version, s.agent_version) as agent_version,
    coalesce(o.agent_name, s.agent_name) as agent_name,
    coalesce(o.provider_name, s.provider_name) as provider_name,
    coalesce(o.capability, s.capability) as capability,
    r.pattern,
    r.complexity,
    r.requested_input_tokens,
    r.optimize,
    r.max_attempts,
    case o.event_type
        when 'StepCompleted' then 'completed'
        when 'StepFailed' then 'failed'
        else 'abandoned'
    end as outcome,
    o.event_type = 'StepCompleted' as succeeded,
    o.error_type,
    o.error_class,
    o.failure_class,
    s.occurred_at as started_at,
    o.occurred_at as ended_at,
    coalesce(o.input_tokens, 0) as input_tokens,
    coalesce(o.output_tokens, 0) as output_tokens,
    coalesce(o.cost_usd, 0.0) as cost_usd,
    o.latency_ms,
    s.timeout_s,
    o.quality,
    sel.selection_score,
    sel.expected_success,
    sel.expected_cost_usd,
    sel.candidates,
    spec.input_per_1k_tokens,
    spec.output_per_1k_tokens,
    spec.per_call_usd,
    cap.proficiency
from outcomes as o
left join started as s
    on o.session_id = s.session_id and o.step_id = s.step_id and o.attempt = s.attempt
left join selected as sel
    on o.session_id = sel.session_id and o.step_id = sel.step_id and o.attempt = sel.attempt
left join requested as r on o.session_id = r.session_id
left join specs as spec
    on spec.agent_id = coalesce(o.agent_id, s.agent_id)
    and spec.version = coalesce(o.agent_version, s.agent_version)
left join {{ ref('stg_agent__capabilities') }} as cap
    on cap.agent_id = spec.agent_id
    and cap.version = spec.version
    and cap.capability = coalesce(o.capability, s.capability)
