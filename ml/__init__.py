"""Model code for the NOFX data platform: features, training, evaluation, MLflow registry.

Reads warehouse tables and writes models; never imports Dagster (assets call into it).
"""
