-- A tenant's own alert rules: set (AlertRuleSet) or deleted (AlertRuleDeleted).
select
    position,
    stream_id,
    tenant_id,
    seq,
    event_type,
    occurred_at,
    {{ nofx.json_text('payload', 'rule_id') }} as rule_id,
    {{ nofx.json_text('payload', 'metric') }} as metric,
    {{ nofx.json_text('payload', 'comparison') }} as comparison,
    {{ nofx.json_number('payload', 'threshold') }} as threshold,
    {{ nofx.json_text('payload', 'severity') }} as severity,
    {{ nofx.json_number('payload', 'min_samples', 'integer') }} as min_samples,
    {{ nofx.json_text('payload', 'description') }} as description,
    {{ nofx.json_text('payload', 'by') }} as changed_by
from {{ ref('stg_events') }}
where stream_type = 'alert_rule'
