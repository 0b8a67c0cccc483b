"""Streamlit executive dashboards over the warehouse (read-only)."""
