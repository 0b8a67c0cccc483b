-- One row per message on the bus (seed table agent_communications): who sent it on which
-- channel, in what order, and how big it was. Bodies stay in the control plane; large ones
-- are stored once as blobs and referenced (stored_as_blob).
with published as (
    select position, tenant_id, occurred_at, payload
    from {{ ref('stg_events') }}
    where stream_type = 'bus' and event_type = 'MessagePublished'
)

select
    {{ nofx.json_text('payload', 'messaging.message.id') }} as message_id,
    tenant_id,
    {{ nofx.json_text('payload', 'messaging.destination.name') }} as channel,
    case
        when {{ nofx.json_text('payload', 'messaging.destination.name') }} like 'topic:%'
            then 'topic'
        when {{ nofx.json_text('payload', 'messaging.destination.name') }} like 'direct:%'
            then 'direct'
        else 'other'
    end as channel_kind,
    {{ nofx.json_number('payload', 'channel_seq', 'integer') }} as channel_seq,
    {{ nofx.json_text('payload', 'session_id') }} as session_id,
    {{ nofx.json_text('payload', 'sender') }} as sender,
    {{ nofx.json_number('payload', 'body_bytes', 'bigint') }} as body_bytes,
    {{ nofx.json_text('payload', 'stored_as_blob') }} = 'true' as stored_as_blob,
    occurred_at as published_at,
    position as event_position
from published
