"""Asset group names: the stages of ``python -m dagster_project.materialize`` and the jobs'
selections. Renaming one renames a stage."""

INGEST = "ingest"
TRANSFORM = "transform"
DAILY = "daily"  # the dbt models rebuilt one UTC day at a time
ML = "ml"
OPERATIONS = "operations"
