-- One row per recorded link between two agents in a session (seed table agent_relationships):
-- a supervisor delegating to a worker (hierarchical), a reviewer judging an author (pair),
-- a peer handing an item to another (swarm).
with events as (
    select position, tenant_id, occurred_at, event_type, payload,
        {{ nofx.json_text('payload', 'session_id') }} as session_id
    from {{ ref('stg_events') }}
    where stream_type = 'session'
        and event_type in ('AgentRelationshipRecorded', 'ReviewRecorded', 'HandoffRecorded')
)

select
    position as relationship_id,
    session_id,
    tenant_id,
    occurred_at,
    'delegates_to' as relation,
    {{ nofx.json_text('payload', 'supervisor_agent_id') }} as from_agent_id,
    {{ nofx.json_text('payload', 'worker_agent_id') }} as to_agent_id,
    {{ nofx.json_number('payload', 'depth', 'integer') }} as depth,
    {{ nofx.json_text('payload', 'step_id') }} as detail
from events
where event_type = 'AgentRelationshipRecorded'

union all

select
    position,
    session_id,
    tenant_id,
    occurred_at,
    'reviews',
    {{ nofx.json_text('payload', 'reviewer_agent_id') }},
    {{ nofx.json_text('payload', 'author_agent_id') }},
    cast(null as integer),
    {{ nofx.json_text('payload', 'verdict') }}
from events
where event_type = 'ReviewRecorded'

union all

select
    position,
    session_id,
    tenant_id,
    occurred_at,
    'hands_off_to',
    {{ nofx.json_text('payload', 'from_agent_id') }},
    {{ nofx.json_text('payload', 'to_agent_id') }},
    cast(null as integer),
    {{ nofx.json_text('payload', 'item') }}
from events
where event_type = 'HandoffRecorded'
