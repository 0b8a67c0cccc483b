"""Ingest: the event store landed in raw.raw_events, its checks, and the refresh on new events."""
