"""The daily partitions of the marts rebuilt one UTC day at a time, starting at the day of
the store's first event (read once, when the definitions load)."""

from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from nofx.settings import Settings


def partition_start(first_event_at: datetime | None, today: date) -> str:
    """The first daily partition: the UTC day of the first event, today for an empty store.

    Starting at a fixed date showed hundreds of "missing" partitions that never had data.
    """
    if first_event_at is None:
        return today.isoformat()
    if first_event_at.tzinfo is not None:
        first_event_at = first_event_at.astimezone(UTC)
    return min(first_event_at.date(), today).isoformat()


def first_event_at(database_url: str) -> datetime | None:
    """When the store's first event happened; None when the store is missing, empty or
    unreadable (Dagster must still load, so this never raises)."""
    if database_url.startswith("sqlite"):
        path = database_url.split("///", 1)[-1]
        if not path or path == ":memory:" or not Path(path).exists():
            return None
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            value = conn.execute(sa.text("select min(occurred_at) from events")).scalar()
    except sa.exc.SQLAlchemyError:
        return None
    finally:
        engine.dispose()
    if isinstance(value, str):  # SQLite returns the stored text
        value = datetime.fromisoformat(value)
    return value if isinstance(value, datetime) else None


DAILY_PARTITIONS = dg.DailyPartitionsDefinition(
    start_date=partition_start(
        first_event_at(Settings.from_env().database_url), datetime.now(UTC).date()
    ),
    end_offset=1,
    timezone="UTC",  # today's partition fills live
)
