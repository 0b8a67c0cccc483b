"""bench.orchestration's bus section: durable publishes next to a plain-sqlite3 peer."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.report import show
from nofx.store import EventStore


async def bus_throughput(
    messages: int, concurrency: int, durability: str = "full"
) -> dict[str, Any]:
    """``concurrency`` publishers at once, each publishing its next message as soon as the
    last one is durable (awaited), all on one session topic; then a replay of the channel."""
    from nofx.bus import MessageBus
    from nofx.domain import Message

    with tempfile.TemporaryDirectory() as tmp:
        store = EventStore(f"sqlite:///{Path(tmp) / 'e.db'}", durability=durability)  # type: ignore[arg-type]
        bus = MessageBus(store)
        numbers = iter(range(messages))

        async def publisher() -> None:
            for i in numbers:  # shared: each message is published once, by one publisher
                await bus.publish_async(
                    Message(
                        sender="bench", topic="session-bench", session_id="bench", body={"i": i}
                    )
                )

        stats = store.writer.stats
        groups, writer_cpu = stats.groups, stats.cpu_s
        start, loop_cpu = time.perf_counter(), time.thread_time()
        await asyncio.gather(*(publisher() for _ in range(concurrency)))
        persist = messages / (time.perf_counter() - start)
        loop_cpu = time.thread_time() - loop_cpu
        groups, writer_cpu = stats.groups - groups, stats.cpu_s - writer_cpu
        start = time.perf_counter()
        replayed = list(bus.replay("topic:session-bench", from_offset=0))
        replay = len(replayed) / (time.perf_counter() - start)
        in_order = [m.seq for m in replayed] == list(range(1, messages + 1))
        every_message = sorted(m.body["i"] for m in replayed) == list(range(messages))
        store.dispose()
    return {
        "messages": messages,
        "publishers_at_once": concurrency,
        "durability": store.durability,
        "bus_persist_msgs_per_s": persist,
        "bus_replay_msgs_per_s": replay,
        "bus_commit_groups": groups,
        # CPU time of the two threads per message: steadier than msgs/s on a loaded host
        "bus_loop_cpu_us_per_msg": loop_cpu / messages * 1e6,
        "bus_writer_cpu_us_per_msg": writer_cpu / messages * 1e6,
        "bus_channel_gap_free": in_order and every_message,
    }


def bus_sqlite_ceiling(messages: int, batch: int, durability: str) -> tuple[float, float]:
    """The peer: the bus's rows (a message row and its MessagePublished event) written by
    plain sqlite3 ``executemany``, ``batch`` messages per transaction, same schema and
    pragmas, one thread, no event loop: what SQLite takes for the same work. Returns
    (messages/s, CPU microseconds per message)."""
    import uuid

    import orjson

    from nofx.domain import utcnow

    with tempfile.TemporaryDirectory() as tmp:
        EventStore(f"sqlite:///{Path(tmp) / 'e.db'}", durability=durability).dispose()  # type: ignore[arg-type]
        conn = sqlite3.connect(Path(tmp) / "e.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={durability.upper()}")
        channel, stream = "topic:session-bench", "channel-default-topic:session-bench"
        seq = 0
        start, cpu = time.perf_counter(), time.thread_time()
        for first in range(0, messages, batch):
            now = utcnow().strftime("%Y-%m-%d %H:%M:%S.%f")
            rows, events = [], []
            for i in range(first, min(messages, first + batch)):
                seq += 1
                message_id = f"msg_{uuid.uuid4().hex}"
                body = orjson.dumps({"i": i}).decode()
                rows.append(("default", message_id, channel, seq, "bench", "bench", body, now))
                payload = {
                    "messaging.message.id": message_id,
                    "messaging.destination.name": channel,
                    "channel_seq": seq,
                    "session_id": "bench",
                    "sender": "bench",
                    "body_bytes": len(body),
                    "stored_as_blob": False,
                }
                events.append((stream, seq, now, orjson.dumps(payload).decode()))
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "SELECT max(channel_seq) FROM agent_communications"
                " WHERE tenant_id = 'default' AND channel = ?",
                (channel,),
            ).fetchone()
            conn.executemany(
                "INSERT INTO agent_communications (tenant_id, message_id, channel, channel_seq,"
                " session_id, sender, body, body_ref, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?)",
                rows,
            )
            conn.executemany(
                "INSERT INTO events (stream_id, stream_type, seq, type, tenant_id, occurred_at,"
                " idempotency_key, payload)"
                " VALUES (?, 'bus', ?, 'MessagePublished', 'default', ?, NULL, ?)",
                events,
            )
            conn.execute("COMMIT")
        elapsed, cpu = time.perf_counter() - start, time.thread_time() - cpu
        conn.close()
    return messages / elapsed, cpu / messages * 1e6


def bus_section(quick: bool, repeats: int = 3) -> dict[str, Any]:
    """The bus at ``full`` and ``normal``, each run next to its peer (the same rows through
    plain sqlite3 in batches of the publishers' count), alternating, with the host's load."""
    messages, concurrency = (5_000 if quick else 20_000), 256
    runs: list[dict[str, Any]] = []
    for repeat in range(repeats):
        for durability in ("full", "normal"):
            load = os.getloadavg()[0]
            bus = asyncio.run(bus_throughput(messages, concurrency, durability))
            ceiling, ceiling_cpu = bus_sqlite_ceiling(messages, concurrency, durability)
            runs.append(
                {
                    "durability": durability,
                    "repeat": repeat,
                    "messages": messages,
                    "load_1m": load,
                    "bus_msgs_per_s": bus["bus_persist_msgs_per_s"],
                    "sqlite_peer_msgs_per_s": ceiling,
                    "fraction_of_peer": bus["bus_persist_msgs_per_s"] / ceiling,
                    "commit_groups": bus["bus_commit_groups"],
                    "loop_cpu_us_msg": bus["bus_loop_cpu_us_per_msg"],
                    "writer_cpu_us_msg": bus["bus_writer_cpu_us_per_msg"],
                    "peer_cpu_us_msg": ceiling_cpu,
                    "replay_msgs_per_s": bus["bus_replay_msgs_per_s"],
                    "gap_free": bus["bus_channel_gap_free"],
                }
            )
    show(
        f"message bus: {concurrency} publishers awaiting each publish, one topic "
        "(peer: the same rows through plain sqlite3 executemany)",
        runs,
    )

    def median(durability: str, key: str) -> float:
        return statistics.median(r[key] for r in runs if r["durability"] == durability)

    return {
        "bus_persist_msgs_per_s": median("full", "bus_msgs_per_s"),
        "bus_durability": "full",
        "bus_persist_msgs_per_s_normal": median("normal", "bus_msgs_per_s"),
        "bus_sqlite_peer_msgs_per_s": {
            d: median(d, "sqlite_peer_msgs_per_s") for d in ("full", "normal")
        },
        "bus_fraction_of_sqlite_peer": {
            d: median(d, "fraction_of_peer") for d in ("full", "normal")
        },
        "bus_cpu_us_per_msg": {
            d: {
                "loop": median(d, "loop_cpu_us_msg"),
                "writer": median(d, "writer_cpu_us_msg"),
                "sqlite_peer": median(d, "peer_cpu_us_msg"),
            }
            for d in ("full", "normal")
        },
        "bus_replay_msgs_per_s": median("full", "replay_msgs_per_s"),
        "bus_channel_gap_free": all(r["gap_free"] for r in runs),
        "bus_publishers_at_once": concurrency,
        "bus_runs": runs,
    }
