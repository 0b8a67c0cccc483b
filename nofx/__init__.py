"""NOFX: a control plane for fleets of AI agents.

The core library knows nothing of Dagster, dbt or Streamlit; those live in
``dagster_project/``, ``dbt/`` and ``dashboards/`` and call into this package.
"""

__version__ = "0.1.0"
