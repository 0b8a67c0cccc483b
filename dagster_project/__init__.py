"""Dagster definitions for the NOFX data platform: events -> warehouse -> models -> predictions."""
