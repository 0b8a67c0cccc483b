"""What a publisher is told holds under 256 concurrent publishers: an answer comes only after
the commit that holds the message, a failed commit fails exactly the publishers whose
messages were in it, and every channel stays numbered 1..n without a gap."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select

from nofx.bus import MessageBus
from nofx.domain import Message
from nofx.store import EventStore
from nofx.store.schema import agent_communications as comms

PUBLISHERS = 256


class CommitRefused(Exception):
    """The injected failure: the commit of one group is refused (as a full disk would)."""


def refuse_commits(store: EventStore, which: set[int]) -> list[int]:
    """Refuse the writer's commits numbered in ``which`` (1 = the first); returns the
    running count of commits attempted."""
    attempted = [0]

    @event.listens_for(store.engine, "commit")
    def commit(_conn: Any) -> None:
        attempted[0] += 1
        if attempted[0] in which:
            raise CommitRefused(f"commit {attempted[0]} refused")

    return attempted


def run_publishers(
    store: EventStore, per_publisher: int, channels: int
) -> tuple[list[tuple[str, str, int]], list[tuple[str, BaseException]], list[str]]:
    """Every publisher publishes its messages one after the other, each awaiting its own
    answer; on each answer it looks the message up from another connection."""
    bus = MessageBus(store)
    acked: list[tuple[str, str, int]] = []
    failed: list[tuple[str, BaseException]] = []
    unseen_at_ack: list[str] = []

    def visible(message_id: str) -> bool:
        with store.engine.connect() as conn:
            row = conn.execute(select(comms.c.message_id).where(comms.c.message_id == message_id))
            return row.first() is not None

    async def publisher(p: int) -> None:
        for i in range(per_publisher):
            message = Message(
                message_id=f"p{p}-{i}", sender=f"agt_{p}", topic=f"t{p % channels}", body={"i": i}
            )
            try:
                stored = await bus.publish_async(message)
            except CommitRefused as exc:
                failed.append((message.message_id, exc))
                continue
            if not visible(stored.message_id):
                unseen_at_ack.append(stored.message_id)
            acked.append((stored.message_id, stored.channel, stored.seq))

    async def everyone() -> None:
        await asyncio.gather(*(publisher(p) for p in range(PUBLISHERS)))

    asyncio.run(everyone())
    return acked, failed, unseen_at_ack


def stored_rows(store: EventStore) -> list[tuple[str, str, int]]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(comms.c.message_id, comms.c.channel, comms.c.channel_seq))
        return [(r[0], r[1], r[2]) for r in rows]


def check(store: EventStore, per_publisher: int, channels: int, refused: set[int]) -> None:
    assert max(refused, default=0) <= per_publisher
    attempted = refuse_commits(store, refused)
    acked, failed, unseen_at_ack = run_publishers(store, per_publisher, channels)
    assert unseen_at_ack == []  # no answer before the commit that holds the message
    assert len(acked) + len(failed) == PUBLISHERS * per_publisher
    # each group holds at most one message per publisher, so there are at least
    # per_publisher groups: every refused number below that is reached
    assert attempted[0] >= max(refused, default=0)
    assert bool(failed) == bool(refused)
    stored = stored_rows(store)
    # what was acknowledged is stored, with the number its publisher was told; what failed
    # is not stored at all
    assert sorted(stored) == sorted(acked)
    assert not {m for m, _ in failed} & {m for m, _, _ in stored}
    for c in range(channels):
        seqs = sorted(s for _, channel, s in stored if channel == f"topic:t{c}")
        assert seqs == list(range(1, len(seqs) + 1))  # gap-free despite the refused groups
    published = store.read_all(limit=1_000_000)
    assert len([e for e in published if e.type == "MessagePublished"]) == len(acked)


def test_256_publishers_each_awaiting_get_gap_free_numbers_after_the_commit(
    tmp_path: Path,
) -> None:
    store = EventStore(f"sqlite:///{tmp_path / 'e.db'}")
    try:
        check(store, per_publisher=8, channels=1, refused=set())
    finally:
        store.dispose()


@pytest.mark.parametrize("durability", ["full", "normal"])
def test_a_refused_commit_fails_exactly_its_publishers_and_loses_no_acknowledged_message(
    tmp_path: Path, durability: str
) -> None:
    store = EventStore(f"sqlite:///{tmp_path / 'e.db'}", durability=durability)  # type: ignore[arg-type]
    try:
        check(store, per_publisher=8, channels=2, refused={2, 3, 6})
    finally:
        store.dispose()


def test_a_refused_commit_on_postgresql(pg_url: str) -> None:
    store = EventStore(pg_url)
    try:
        check(store, per_publisher=4, channels=2, refused={2, 3})
    finally:
        store.dispose()
