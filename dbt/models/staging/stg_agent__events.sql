-- Agent registry events: one row per registration, update or removal, with the spec typed.
select
    position,
    {{ nofx.json_text('payload', 'agent_id') }} as agent_id,
    tenant_id,
    seq,
    event_type,
    occurred_at,
    {{ nofx.json_number('payload', 'version', 'integer') }} as version,
    {{ nofx.json_text('payload', 'spec/name') }} as name,
    {{ nofx.json_text('payload', 'spec/provider/kind') }} as provider_kind,
    {{ nofx.json_number('payload', 'spec/pricing/input_per_1k_tokens') }} as input_per_1k_tokens,
    {{ nofx.json_number('payload', 'spec/pricing/output_per_1k_tokens') }}
        as output_per_1k_tokens,
    {{ nofx.json_number('payload', 'spec/pricing/per_call') }} as per_call_usd,
    {{ nofx.json_number('payload', 'spec/max_concurrency', 'integer') }} as max_concurrency,
    {{ nofx.json_text('payload', 'spec/capabilities') }} as capabilities_json,
    payload
from {{ ref('stg_events') }}
where stream_type = 'agent'
