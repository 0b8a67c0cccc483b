-- One row per workflow run (sessions with pattern 'workflow', seed table workflow_executions):
-- how many steps ran, failed, were retried or skipped, planned against realised makespan
-- (from the steps' measured latencies) and cost.
with events as (
    select * from {{ ref('stg_session__events') }}
    where session_id in (
        select session_id from {{ ref('agent_sessions') }} where pattern = 'workflow'
    )
),

steps as (
    select
        session_id,
        cast(count(distinct case when event_type = 'StepCompleted' then step_id end) as bigint)
            as steps_completed,
        cast(sum(case when event_type = 'StepFailed' then 1 else 0 end) as bigint)
            as failed_attempts,
        cast(count(distinct case when event_type = 'StepSkipped' then step_id end) as bigint)
            as steps_skipped,
        cast(count(distinct case when event_type = 'StepStarted' and attempt > 1 then step_id end)
            as bigint) as steps_retried
    from events
    group by session_id
),

completed as (
    select session_id, steps_planned, planned_makespan_s, actual_makespan_s, planned_cost_usd
    from events
    where event_type = 'SessionCompleted'
)

select
    s.session_id as workflow_execution_id,
    s.tenant_id,
    s.status,
    s.succeeded,
    s.requested_at,
    s.started_at,
    s.ended_at,
    s.cost_usd,
    s.error_type,
    coalesce(steps.steps_completed, 0) as steps_completed,
    coalesce(steps.failed_attempts, 0) as failed_attempts,
    coalesce(steps.steps_skipped, 0) as steps_skipped,
    coalesce(steps.steps_retried, 0) as steps_retried,
    c.steps_planned,
    c.planned_makespan_s,
    c.actual_makespan_s,
    c.planned_cost_usd,
    case
        when c.planned_makespan_s > 0 then c.actual_makespan_s / c.planned_makespan_s - 1
    end as delay_ratio
from {{ ref('agent_sessions') }} as s
left join steps on steps.session_id = s.session_id
left join completed as c on c.session_id = s.session_id
where s.pattern = 'workflow'
