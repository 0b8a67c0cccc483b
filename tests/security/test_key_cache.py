"""Verified keys remembered for a second (issue 12): what the cache may never do.

A wrong secret never passes; a key revoked in this process is refused at once; a key revoked
by another process is refused within the cache's bound; the cache stays bounded.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event

from nofx.security import ApiKeyService, Scope
from nofx.security.keys import AuthenticationError
from nofx.store import EventStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr("nofx.security.keys.time.monotonic", clock)
    return clock


@pytest.fixture
def reads(store: EventStore) -> Iterator[list[str]]:
    """SQL statements that read api_keys."""
    seen: list[str] = []

    def record(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        if "FROM api_keys" in statement:
            seen.append(statement)

    event.listen(store.engine, "before_cursor_execute", record)
    yield seen
    event.remove(store.engine, "before_cursor_execute", record)


def test_a_verified_key_is_answered_from_memory_for_its_ttl(
    store: EventStore, clock: Clock, reads: list[str]
) -> None:
    keys = ApiKeyService(store, cache_s=1.0)
    plaintext = keys.create("t", "k", {Scope.READ}).plaintext
    first = keys.authenticate(plaintext)
    assert keys.cached(plaintext) == first
    assert [keys.authenticate(plaintext) for _ in range(5)] == [first] * 5
    assert len(reads) == 2  # create's own read-back, then the first verification only
    clock.now += 1.0
    assert keys.cached(plaintext) is None  # past its bound: the store is asked again
    assert keys.authenticate(plaintext) == first
    assert len(reads) == 3


def test_a_wrong_secret_never_passes_the_cache(store: EventStore, clock: Clock) -> None:
    keys = ApiKeyService(store)
    plaintext = keys.create("t", "k", {Scope.WRITE}).plaintext
    keys.authenticate(plaintext)
    prefix, key_id, secret = plaintext.split("_")
    for wrong in (
        f"{prefix}_{key_id}_{secret[:-1]}x" if secret[-1] != "x" else f"{prefix}_{key_id}_y",
        f"{prefix}_{key_id}_{secret}{secret}",
        f"{prefix}_{key_id}_",
        plaintext.upper(),
    ):
        assert keys.cached(wrong) is None
        with pytest.raises(AuthenticationError):
            keys.authenticate(wrong)
    assert keys.cached(None) is None and keys.cached("") is None


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tamper=st.text(min_size=1, max_size=8), where=st.integers(min_value=0, max_value=80))
def test_no_altered_key_is_answered_from_memory(store: EventStore, tamper: str, where: int) -> None:
    keys = ApiKeyService(store, cache_s=60.0)
    plaintext = keys.create("t", "k", {Scope.READ}).plaintext
    keys.authenticate(plaintext)
    altered = plaintext[:where] + tamper + plaintext[where:]
    assert keys.cached(altered) is None


def test_revoked_here_is_refused_at_once(store: EventStore, clock: Clock) -> None:
    keys = ApiKeyService(store, cache_s=60.0)
    issued = keys.create("t", "k", {Scope.READ})
    keys.authenticate(issued.plaintext)
    keys.revoke(issued.key.key_id)
    assert keys.cached(issued.plaintext) is None
    with pytest.raises(AuthenticationError):
        keys.authenticate(issued.plaintext)


def test_revoked_elsewhere_is_refused_within_the_bound(store: EventStore, clock: Clock) -> None:
    """Another API process (its own service) revokes: this one stops within cache_s."""
    here, elsewhere = ApiKeyService(store, cache_s=1.0), ApiKeyService(store, cache_s=1.0)
    issued = here.create("t", "k", {Scope.READ})
    here.authenticate(issued.plaintext)
    elsewhere.revoke(issued.key.key_id)
    clock.now += 0.5
    assert here.authenticate(issued.plaintext).key_id == issued.key.key_id  # within the bound
    clock.now += 0.5
    with pytest.raises(AuthenticationError):
        here.authenticate(issued.plaintext)  # the bound is over: refused, and not remembered
    assert here.cached(issued.plaintext) is None


def test_the_cache_is_bounded_and_drops_expired_entries_first(
    store: EventStore, clock: Clock
) -> None:
    keys = ApiKeyService(store, cache_s=1.0, cache_size=3)
    issued = [keys.create("t", f"k{i}", {Scope.READ}).plaintext for i in range(5)]
    keys.authenticate(issued[0])
    clock.now += 2.0  # the first one expires
    for plaintext in issued[1:4]:
        keys.authenticate(plaintext)
    assert [keys.cached(p) is not None for p in issued[1:4]] == [True] * 3
    keys.authenticate(issued[4])  # full of fresh entries: the oldest goes
    assert len(keys._verified) == 3
    assert keys.cached(issued[1]) is None and keys.cached(issued[4]) is not None
