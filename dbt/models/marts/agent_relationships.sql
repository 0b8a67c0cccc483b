-- One row per recorded link between two agents in a session (seed table agent_relationships):
-- a supervisor delegating to a worker (hierarchical), a reviewer judging an author (pair),
-- a peer handing an item to another (swarm).
with events as (
    select *
    from {{ ref('stg_session__events') }}
    where event_type in ('AgentRelationshipRecorded', 'ReviewRecorded', 'HandoffRecorded')
)

select
    position as relationship_id,
    session_id,
    tenant_id,
    occurred_at,
    case event_type
        when 'AgentRelationshipRecorded' then 'delegates_to'
        when 'ReviewRecorded' then 'reviews'
        else 'hands_off_to'
    end as relation,
    case event_type
        when 'AgentRelationshipRecorded' then supervisor_agent_id
        when 'ReviewRecorded' then reviewer_agent_id
        else from_agent_id
    end as from_agent_id,
    case event_type
        when 'AgentRelationshipRecorded' then worker_agent_id
        when 'ReviewRecorded' then author_agent_id
        else to_agent_id
    end as to_agent_id,
    case when event_type = 'AgentRelationshipRecorded' then delegation_depth end as depth,
    case event_type
        when 'AgentRelationshipRecorded' then step_id
        when 'ReviewRecorded' then verdict
        else handoff_item
    end as detail
from events
