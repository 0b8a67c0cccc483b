"""Transform: the dbt models (transform and daily groups), checks on them, the daily rollup."""
