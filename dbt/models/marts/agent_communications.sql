-- One row per message on the bus (seed table agent_communications): who sent it on which
-- channel, in what order, and how big it was. Bodies stay in the control plane; large ones
-- are stored once as blobs and referenced (stored_as_blob).
select
    message_id,
    tenant_id,
    channel,
    case
        when channel like 'topic:%' then 'topic'
        when channel like 'direct:%' then 'direct'
        else 'other'
    end as channel_kind,
    channel_seq,
    session_id,
    sender,
    body_bytes,
    stored_as_blob,
    occurred_at as published_at,
    position as event_position
from {{ ref('stg_bus__events') }}
where event_type = 'MessagePublished'
