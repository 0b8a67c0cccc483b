-- One row per (agent, spec version, capability) with the declared proficiency (1..5).
with specs as (
    select agent_id, version, capabilities_json
    from {{ ref('stg_agent__events') }}
    where event_type in ('AgentRegistered', 'AgentUpdated')
),

capabilities as (
    select
        agent_id,
        version,
        {{ nofx.json_array_elements('capabilities_json') }} as capability_json
    from specs
)

select
    agent_id,
    version,
    {{ nofx.json_text('capability_json', 'name') }} as capability,
    {{ nofx.json_number('capability_json', 'proficiency', 'integer') }} as proficiency
from capabilities
