"""Sensors see the real store: run requests, skip reasons and JSON cursors."""

from __future__ import annotations

import json
import time

import dagster as dg
import pytest

from dagster_project.defs.ingest.sensors import (
    TELEMETRY_REFRESH_S,
    new_events_sensor,
    refresh_due,
)
from dagster_project.defs.sessions.sensors import requested_sessions_sensor, run_requested_sessions
from dagster_project.lib.cursors import read_cursor
from dagster_project.lib.resources import EventStoreResource
from nofx.domain import SessionRequest, Task
from nofx.runtime import Runtime
from nofx.settings import Settings
from nofx.store import EventStore


def evaluate(sensor: dg.SensorDefinition, settings: Settings, cursor: str | None = None):
    context = dg.build_sensor_context(
        cursor=cursor,
        resources={"event_store": EventStoreResource(database_url=settings.database_url)},
    )
    return sensor(context)


def submit(runtime: Runtime, n: int) -> list[str]:
    return [
        runtime.sessions.submit(
            SessionRequest(task=Task(prompt=f"p{i}", capability="code.generate"))
        ).session_id
        for i in range(n)
    ]


def test_requested_sessions_sensor_skips_when_nothing_waits(settings: Settings, store) -> None:
    result = evaluate(requested_sessions_sensor, settings)
    assert isinstance(result, dg.SkipReason)
    assert "no sessions in status 'requested'" in result.skip_message


def test_requested_sessions_sensor_launches_once_per_new_batch_and_the_job_runs_them(
    settings: Settings, store: EventStore, fleet, runtime: Runtime
) -> None:
    ids = submit(runtime, 3)
    first = evaluate(requested_sessions_sensor, settings)
    assert isinstance(first, dg.SensorResult)
    (request,) = first.run_requests
    cursor = json.loads(first.cursor)
    newest = max(runtime.sessions.list(limit=10), key=lambda s: (s.created_at, s.session_id))
    assert cursor["newest_session_id"] == newest.session_id in ids
    assert cursor["waiting"] == 3
    assert request.run_key == f"requested-sessions/{newest.session_id}"

    again = evaluate(requested_sessions_sensor, settings, cursor=first.cursor)
    assert isinstance(again, dg.SkipReason)
    assert "3 requested session(s) already handed to a run" in again.skip_message

    more = submit(runtime, 1)
    third = evaluate(requested_sessions_sensor, settings, cursor=first.cursor)
    assert isinstance(third, dg.SensorResult)
    assert json.loads(third.cursor)["newest_session_id"] == more[0]

    result = run_requested_sessions.execute_in_process(
        run_config={"ops": {"run_pending_sessions": {"config": {"time_scale": 0.0}}}},
        resources={"event_store": EventStoreResource(database_url=settings.database_url)},
    )
    assert result.success
    assert result.output_for_node("run_pending_sessions")["sessions"] == 4
    assert runtime.sessions.requested_count() == 0
    done = evaluate(requested_sessions_sensor, settings, cursor=third.cursor)
    assert isinstance(done, dg.SkipReason)


def test_new_events_sensor_tracks_the_last_position(
    settings: Settings, store: EventStore, fleet, runtime: Runtime
) -> None:
    last = store.last_position()
    first = evaluate(new_events_sensor, settings)
    assert isinstance(first, dg.SensorResult)
    assert json.loads(first.cursor)["last_position"] == last
    assert first.run_requests[0].run_key == f"events/{last}"
    quiet = evaluate(new_events_sensor, settings, cursor=first.cursor)
    assert isinstance(quiet, dg.SkipReason)
    assert f"no new events since position {last}" in quiet.skip_message
    submit(runtime, 1)
    later = evaluate(new_events_sensor, settings, cursor=first.cursor)
    assert isinstance(later, dg.SensorResult)
    assert json.loads(later.cursor)["last_position"] == store.last_position() > last


def test_read_cursor_heals_bad_values() -> None:
    assert read_cursor(None) == {}
    assert read_cursor("not json") == {}
    assert read_cursor("[1, 2]") == {}
    assert read_cursor('{"last_position": 4}') == {"last_position": 4}


def test_daily_partitions_start_at_the_first_event(
    settings: Settings, store: EventStore, fleet, runtime: Runtime
) -> None:
    from datetime import UTC, date, datetime, timedelta, timezone

    from dagster_project.lib.partitions import first_event_at, partition_start

    today = date(2026, 5, 3)
    assert partition_start(None, today) == "2026-05-03"
    late_evening = datetime(2026, 5, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert partition_start(late_evening, today) == "2026-05-02"  # UTC day
    assert partition_start(datetime(2027, 1, 1, tzinfo=UTC), today) == "2026-05-03"
    # the real store: missing -> None; with events -> when the first one happened
    assert first_event_at(f"sqlite:///{settings.home / 'absent.db'}") is None
    assert first_event_at("postgresql+psycopg://nobody@127.0.0.1:1/none") is None
    submit(runtime, 1)
    first = first_event_at(settings.database_url)
    assert first is not None
    assert abs(first.replace(tzinfo=first.tzinfo or UTC) - datetime.now(UTC)) < timedelta(hours=1)


def test_the_refreshs_own_alert_events_do_not_start_another_refresh(
    settings: Settings, store: EventStore, fleet, runtime: Runtime
) -> None:
    from nofx.alerts import AlertService, Observation, load_rules
    from nofx.alerts import evaluate as evaluate_rules

    submit(runtime, 1)
    first = evaluate(new_events_sensor, settings)
    assert isinstance(first, dg.SensorResult)
    # what the refresh's alert rules write: must not look like new activity
    rules = load_rules()
    rule = next(r for r in rules if r.metric == "orchestration_failure_rate")
    raised = AlertService(store).sync(
        evaluate_rules(rules, [Observation(rule.metric, "fleet", 0.5, 100)]), {rule.metric}
    )
    assert raised.raised and store.last_position() > json.loads(first.cursor)["last_position"]
    quiet = evaluate(new_events_sensor, settings, cursor=first.cursor)
    assert isinstance(quiet, dg.SkipReason), "the refresh would trigger itself forever"
    submit(runtime, 1)  # a user's activity does
    assert isinstance(evaluate(new_events_sensor, settings, cursor=first.cursor), dg.SensorResult)


@pytest.mark.parametrize(
    "activity, telemetry, seen, refreshed_at, now, due",
    [
        (11, 0, 10, 1000.0, 1001.0, True),  # the fleet did something: refresh
        (10, 12, 10, 1000.0, 1001.0, False),  # API telemetry alone, just refreshed
        (10, 12, 10, 1000.0, 1000.0 + TELEMETRY_REFRESH_S, True),  # ... 15 minutes later
        (10, 12, 10, None, 1000.0, True),  # never refreshed (an old cursor)
        (10, 10, 10, None, 1000.0, False),  # nothing new at all
    ],
)
def test_refresh_is_due_on_activity_and_on_telemetry_only_now_and_then(
    activity: int, telemetry: int, seen: int, refreshed_at: float | None, now: float, due: bool
) -> None:
    assert refresh_due(activity, telemetry, seen, refreshed_at, now) is due


def test_api_telemetry_alone_does_not_refresh_every_minute(
    settings: Settings, store: EventStore, fleet, runtime: Runtime
) -> None:
    from nofx.api.observability import latency_window_write

    submit(runtime, 1)
    first = evaluate(new_events_sensor, settings)
    assert isinstance(first, dg.SensorResult)
    # a health probe's latency window: the API's own telemetry, not the fleet's activity
    store.writer.run(latency_window_write({"source": "test", "window_s": 60.0, "requests": 1}))
    assert store.last_position() > json.loads(first.cursor)["last_position"]
    quiet = evaluate(new_events_sensor, settings, cursor=first.cursor)
    assert isinstance(quiet, dg.SkipReason) and "only API telemetry" in quiet.skip_message
    stale = json.dumps({**json.loads(first.cursor), "refreshed_at": time.time() - 3600})
    assert isinstance(evaluate(new_events_sensor, settings, cursor=stale), dg.SensorResult)
    submit(runtime, 1)  # the fleet's activity refreshes at once
    assert isinstance(evaluate(new_events_sensor, settings, cursor=first.cursor), dg.SensorResult)
