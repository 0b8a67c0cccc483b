{#- JSON field access on the raw payload text, one place per adapter.
    key is a top-level or dotted path whose segments are quoted, so keys that
    contain dots (the OpenTelemetry names, e.g. "gen_ai.agent.name") work. -#}

{% macro json_path(key) -%}
  '$.{%- for part in key.split("/") -%}"{{ part }}"{%- if not loop.last -%}.{%- endif -%}{%- endfor -%}'
{%- endmacro %}

{% macro json_text(column, key) -%}
  {{ return(adapter.dispatch('json_text', 'nofx')(column, key)) }}
{%- endmacro %}

{% macro default__json_text(column, key) -%}
  json_extract_string({{ column }}, {{ nofx.json_path(key) }})
{%- endmacro %}

{% macro postgres__json_text(column, key) -%}
  (({{ column }})::jsonb #>> '{ {{- key.split("/") | join(",") -}} }')
{%- endmacro %}

{% macro json_number(column, key, type=none) -%}
  cast({{ nofx.json_text(column, key) }} as {{ type or nofx.type_double() }})
{%- endmacro %}

{#- The elements of a JSON array held in a text column, one row each (used in a select list). -#}
{% macro json_array_elements(column) -%}
  {{ return(adapter.dispatch('json_array_elements', 'nofx')(column)) }}
{%- endmacro %}

{% macro default__json_array_elements(column) -%}
  unnest(cast(json_extract({{ column }}, '$[*]') as json[]))
{%- endmacro %}

{% macro postgres__json_array_elements(column) -%}
  jsonb_array_elements(({{ column }})::jsonb)
{%- endmacro %}

{#- An ordered list of strings aggregated per group. -#}
{% macro sorted_list_agg(column) -%}
  {{ return(adapter.dispatch('sorted_list_agg', 'nofx')(column)) }}
{%- endmacro %}

{% macro default__sorted_list_agg(column) -%}
  list({{ column }} order by {{ column }})
{%- endmacro %}

{% macro postgres__sorted_list_agg(column) -%}
  array_agg({{ column }} order by {{ column }})
{%- endmacro %}

{#- The length of a JSON array under a top-level key of a text column. -#}
{% macro json_array_length(column, key) -%}
  {{ return(adapter.dispatch('json_array_length', 'nofx')(column, key)) }}
{%- endmacro %}

{% macro default__json_array_length(column, key) -%}
  cast(json_array_length({{ column }}, {{ nofx.json_path(key) }}) as bigint)
{%- endmacro %}

{% macro postgres__json_array_length(column, key) -%}
  cast(jsonb_array_length(({{ column }})::jsonb -> '{{ key }}') as bigint)
{%- endmacro %}
