-- One row per session: what was asked, who did it, how it ended, what it cost.
-- attempts and tokens count StepCompleted + StepFailed, as the core's sessions projection does.
with events as (
    select * from {{ ref('stg_session__events') }}
),

requested as (
    select session_id, tenant_id, pattern, capability, complexity, requested_input_tokens,
        budget_usd, optimize, max_attempts, occurred_at as requested_at
    from events
    where event_type = 'SessionRequested'
),

started as (
    select session_id, min(occurred_at) as started_at, max(pattern) as started_pattern
    from events
    where event_type = 'SessionStarted'
    group by session_id
),

steps as (
    select
        session_id,
        cast(sum(case when event_type != 'StepAbandoned' then 1 else 0 end) as bigint)
            as attempts,
        cast(sum(case when event_type = 'StepFailed' then 1 else 0 end) as bigint) as failed_attempts,
        cast(sum(case when failure_class = 'orchestration' then 1 else 0 end) as bigint)
            as orchestration_failed_attempts,
        avg(case when event_type = 'StepCompleted' then quality end) as answer_quality,
        cast(sum(coalesce(input_tokens, 0)) as bigint) as input_tokens,
        cast(sum(coalesce(output_tokens, 0)) as bigint) as output_tokens,
        sum(coalesce(cost_usd, 0.0)) as cost_usd
    from events
    where event_type in ('StepCompleted', 'StepFailed', 'StepAbandoned')
    group by session_id
),

last_step as (
    select session_id, agent_id, agent_name
    from (
        select
            session_id,
            agent_id,
            agent_name,
            row_number() over (partition by session_id order by position desc) as recency
        from events
        where event_type in ('StepCompleted', 'StepFailed')
    ) as ranked
    where recency = 1
),

terminal as (
    select session_id, event_type, occurred_at as ended_at, agent_id, error_type, failure_class
    from (
        select
            *,
            row_number() over (partition by session_id order by position) as nth
        from events
        where event_type in ('SessionCompleted', 'SessionFailed', 'SessionCancelled')
    ) as ranked
    where nth = 1
)

select
    r.session_id,
    r.tenant_id,
    coalesce(st.started_pattern, r.pattern) as pattern,
    r.capability,
    case
        when t.event_type = 'SessionCompleted' then 'succeeded'
        when t.event_type = 'SessionFailed' then 'failed'
        when t.event_type = 'SessionCancelled' then 'cancelled'
        when st.started_at is not null then 'running'
        else 'requested'
    end as status,
    coalesce(t.event_type = 'SessionCompleted', false) as succeeded,
    coalesce(t.agent_id, ls.agent_id) as agent_id,
    ls.agent_name,
    coalesce(s.attempts, 0) as attempts,
    coalesce(s.failed_attempts, 0) as failed_attempts,
    coalesce(s.input_tokens, 0) as input_tokens,
    coalesce(s.output_tokens, 0) as output_tokens,
    coalesce(s.input_tokens, 0) + coalesce(s.output_tokens, 0) as total_tokens,
    coalesce(s.cost_usd, 0.0) as cost_usd,
    r.complexity,
    r.requested_input_tokens,
    r.budget_usd,
    r.optimize,
    r.max_attempts,
    r.requested_at,
    st.started_at,
    t.ended_at,
    case
        when t.ended_at is not null
            then cast(
                {{ dbt.datediff('coalesce(st.started_at, r.requested_at)', 't.ended_at', 'millisecond') }}
                as bigint
            )
    end as duration_ms,
    t.error_type,
    t.failure_class,
    coalesce(s.orchestration_failed_attempts, 0) as orchestration_failed_attempts,
    s.answer_quality
from requested as r
left join started as st on r.session_id = st.session_id
left join steps as s on r.session_id = s.session_id
left join last_step as ls on r.session_id = ls.session_id
left join terminal as t on r.session_id = t.session_id
