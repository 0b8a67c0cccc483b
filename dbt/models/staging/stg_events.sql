-- Every event, typed and renamed; the payload stays JSON text for the stg_* models below.
select
    position,
    stream_id,
    stream_type,
    cast(seq as integer) as seq,
    type as event_type,
    tenant_id,
    cast(occurred_at as timestamp) as occurred_at,
    idempotency_key,
    payload
from {{ source('raw', 'raw_events') }}
