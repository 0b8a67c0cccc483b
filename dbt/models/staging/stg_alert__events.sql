-- Alert lifecycle events: raised, repeated, acknowledged, resolved, delivery failed.
select
    position,
    stream_id,
    tenant_id,
    seq,
    event_type,
    occurred_at,
    {{ nofx.json_text('payload', 'alert_id') }} as alert_id,
    {{ nofx.json_text('payload', 'rule_id') }} as rule_id,
    {{ nofx.json_text('payload', 'metric') }} as metric,
    {{ nofx.json_text('payload', 'subject') }} as subject,
    {{ nofx.json_text('payload', 'fingerprint') }} as fingerprint,
    {{ nofx.json_text('payload', 'severity') }} as severity,
    {{ nofx.json_text('payload', 'message') }} as message,
    {{ nofx.json_number('payload', 'value') }} as value,
    {{ nofx.json_number('payload', 'threshold') }} as threshold,
    {{ nofx.json_number('payload', 'samples', 'bigint') }} as samples,
    {{ nofx.json_text('payload', 'by') }} as acted_by,
    {{ nofx.json_text('payload', 'note') }} as note,
    {{ nofx.json_text('payload', 'error') }} as delivery_error
from {{ ref('stg_events') }}
where stream_type = 'alert'
