-- The registry as the events tell it: each agent's latest spec, and whether it is still active.
with events as (
    select * from {{ ref('stg_agent__events') }}
),

latest_spec as (
    select *
    from (
        select
            *,
            row_number() over (partition by agent_id order by position desc) as recency
        from events
        where event_type in ('AgentRegistered', 'AgentUpdated')
    ) as ranked
    where recency = 1
),

lifecycle as (
    select
        agent_id,
        min(occurred_at) as registered_at,
        max(occurred_at) as updated_at,
        max(case when event_type = 'AgentDeregistered' then position end) as removed_position,
        max(case when event_type = 'AgentDeregistered' then occurred_at end) as deregistered_at
    from events
    group by agent_id
),

capabilities as (
    select agent_id, version, {{ nofx.sorted_list_agg('capability') }} as capabilities
    from {{ ref('stg_agent__capabilities') }}
    group by agent_id, version
)

select
    s.agent_id,
    s.tenant_id,
    s.name,
    s.version,
    coalesce(l.removed_position, 0) < s.position as is_active,
    s.provider_kind,
    s.input_per_1k_tokens,
    s.output_per_1k_tokens,
    s.per_call_usd,
    s.max_concurrency,
    c.capabilities,
    l.registered_at,
    l.updated_at,
    l.deregistered_at
from latest_spec as s
left join lifecycle as l on s.agent_id = l.agent_id
left join capabilities as c on s.agent_id = c.agent_id and s.version = c.version
