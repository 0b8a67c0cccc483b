-- Message bus events: one MessagePublished per stored message (its body stays in the
-- control plane), written in the same transaction as the message.
select
    position,
    stream_id,
    tenant_id,
    seq,
    event_type,
    occurred_at,
    {{ nofx.json_text('payload', 'messaging.message.id') }} as message_id,
    {{ nofx.json_text('payload', 'messaging.destination.name') }} as channel,
    {{ nofx.json_number('payload', 'channel_seq', 'integer') }} as channel_seq,
    {{ nofx.json_text('payload', 'session_id') }} as session_id,
    {{ nofx.json_text('payload', 'sender') }} as sender,
    {{ nofx.json_number('payload', 'body_bytes', 'bigint') }} as body_bytes,
    {{ nofx.json_text('payload', 'stored_as_blob') }} = 'true' as stored_as_blob
from {{ ref('stg_events') }}
where stream_type = 'bus'
