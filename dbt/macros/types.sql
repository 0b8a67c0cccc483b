{#- A 64-bit float on every target. dbt.type_float() is "float", which DuckDB reads as a
    32-bit REAL (costs and latencies lost digits); "double precision" is DOUBLE on DuckDB
    and float8 on PostgreSQL. -#}
{% macro type_double() -%}
  double precision
{%- endmacro %}
