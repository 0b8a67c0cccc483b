"""Helpers the definitions share (no definitions here): resources, warehouse tables, the raw
events copy, the dbt project and translator, partitions and Great Expectations glue."""
