{{
    config(
        materialized='incremental',
        unique_key=['day', 'agent_id', 'capability'],
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
    )
}}
-- Per agent, capability and UTC day: how many calls, how many succeeded, how many failed for
-- the orchestrator's reasons and how many for the task's (ADR 0018), answer quality,
-- latency and spend.
-- Abandoned attempts (lost workers) have no outcome to judge and are left out.
-- Partitioned by day in Dagster: a run passes min_day/max_day and rebuilds just those days
-- (whole days, so delete+insert on the day replaces them exactly); without them, every day.
select
    cast(date_trunc('day', ended_at) as date) as day,
    agent_id,
    max(agent_name) as agent_name,
    capability,
    cast(count(*) as bigint) as calls,
    cast(sum(case when succeeded then 1 else 0 end) as bigint) as successes,
    cast(sum(case when succeeded then 1 else 0 end) as {{ nofx.type_double() }}) / count(*)
        as success_rate,
    cast(sum(case when failure_class = 'orchestration' then 1 else 0 end) as bigint)
        as orchestration_failures,
    cast(sum(case when failure_class = 'task' then 1 else 0 end) as bigint) as task_failures,
    cast(sum(case when failure_class = 'orchestration' then 1 else 0 end)
        as {{ nofx.type_double() }}) / count(*) as orchestration_failure_rate,
    cast(sum(case when failure_class = 'task' then 1 else 0 end) as {{ nofx.type_double() }})
        / count(*) as task_failure_rate,
    avg(case when succeeded then quality end) as avg_quality,
    percentile_cont(0.5) within group (order by latency_ms) as p50_latency_ms,
    percentile_cont(0.95) within group (order by latency_ms) as p95_latency_ms,
    sum(cost_usd) as cost_usd,
    cast(sum(input_tokens) as bigint) as input_tokens,
    cast(sum(output_tokens) as bigint) as output_tokens
from {{ ref('agent_step_calls') }}
where outcome in ('completed', 'failed')
{% if var('min_day', none) is not none %}
    and ended_at >= cast('{{ var("min_day") }}' as timestamp)
    and ended_at < cast('{{ var("max_day") }}' as timestamp)
{% endif %}
group by cast(date_trunc('day', ended_at) as date), agent_id, capability
