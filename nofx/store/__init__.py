"""The event store: the single source of truth, on SQLite by default or PostgreSQL."""

from nofx.store.event_store import EventStore, Transaction

__all__ = ["EventStore", "Transaction"]
