"""The agent registry: lifecycle, versioning, capability filters and clear refusals."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from nofx.domain import AgentSpec, AgentStatus
from nofx.errors import ConcurrencyError, DuplicateAgentError, NotFoundError, UnknownCapabilityError
from nofx.registry import AgentRegistry, agent_stream
from nofx.store import EventStore


def spec(name: str = "coder", **kw) -> AgentSpec:
    caps = kw.pop("capabilities", [{"name": "code.generate", "proficiency": 4}])
    return AgentSpec(name=name, capabilities=caps, **kw)


def test_register_update_deregister_writes_events_and_bumps_version(
    registry: AgentRegistry, store: EventStore
) -> None:
    agent = registry.register(spec())
    assert agent.version == 1 and agent.status is AgentStatus.ACTIVE
    updated = registry.update(agent.agent_id, spec(capabilities=[{"name": "code.review"}]))
    assert updated.version == 2
    assert [c.name for c in updated.capabilities] == ["code.review"]
    assert registry.list(capability="code.generate") == []
    gone = registry.deregister(agent.agent_id)
    assert gone.status is AgentStatus.DEREGISTERED
    with pytest.raises(NotFoundError):
        registry.get(agent.agent_id)
    types = [e.type for e in store.read_stream(agent_stream(agent.agent_id))]
    assert types == ["AgentRegistered", "AgentUpdated", "AgentDeregistered"]


def test_duplicate_name_is_refused_and_nothing_is_written(
    registry: AgentRegistry, store: EventStore
) -> None:
    registry.register(spec())
    before = store.count_events()
    with pytest.raises(DuplicateAgentError, match="already registered"):
        registry.register(spec())
    assert store.count_events() == before
    assert len(registry.list()) == 1
    # the same name in another tenant is a different agent
    registry.register(spec(tenant_id="acme"))
    assert len(registry.list(tenant_id="acme")) == 1


def test_update_with_stale_version_is_refused(registry: AgentRegistry) -> None:
    agent = registry.register(spec())
    registry.update(agent.agent_id, spec(), expected_version=1)
    with pytest.raises(ConcurrencyError):
        registry.update(agent.agent_id, spec(), expected_version=1)


def test_rename_onto_an_existing_name_is_refused(registry: AgentRegistry) -> None:
    registry.register(spec("a"))
    b = registry.register(spec("b"))
    with pytest.raises(DuplicateAgentError):
        registry.update(b.agent_id, spec("a"))
    assert registry.get(b.agent_id).name == "b"


def test_filter_by_capability_and_proficiency(registry: AgentRegistry) -> None:
    registry.register(spec("novice", capabilities=[{"name": "code.generate", "proficiency": 1}]))
    registry.register(spec("expert", capabilities=[{"name": "code.generate", "proficiency": 5}]))
    names = {a.name for a in registry.list(capability="code.generate", min_proficiency=3)}
    assert names == {"expert"}
    assert registry.capabilities() == {"code.generate"}


def test_unknown_capability_suggests_the_nearest(registry: AgentRegistry) -> None:
    registry.register(spec())
    with pytest.raises(UnknownCapabilityError, match=r"did you mean code\.generate"):
        registry.require_capability("code.generat", "default")
    with pytest.raises(UnknownCapabilityError, match="known: none"):
        registry.require_capability("code.generate", "other-tenant")


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_offers_answers_for_one_tenant_and_capability(
    backend: str, registry: AgentRegistry, request: pytest.FixtureRequest
) -> None:
    """What every submission asks on the writer, on the DB-API cursor of either database."""
    if backend == "postgres":
        store = EventStore(request.getfixturevalue("pg_url"))
        request.addfinalizer(store.dispose)
        registry = AgentRegistry(store)
    registry.register(spec())
    registry.register(spec("reviewer", tenant_id="acme", capabilities=[{"name": "code.review"}]))
    asked = [
        ("default", "code.generate"),
        ("default", "code.review"),  # another tenant's capability
        ("acme", "code.review"),
        ("acme", "code.generate"),
        ("nobody", "code.generate"),
    ]
    with registry.store.engine.begin() as conn:
        found = [AgentRegistry.offers(conn, tenant, cap) for tenant, cap in asked]
    assert found == [True, False, True, False, False]
    assert found == [cap in registry.capabilities(tenant) for tenant, cap in asked]


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"name": "x", "capabilities": []}, "capabilities"),
        ({"name": "x", "capabilities": [{"name": "Code Gen"}]}, "capabilities"),
        ({"name": "x", "capabilities": [{"name": "a.b", "proficiency": 9}]}, "proficiency"),
        (
            {"name": "x", "capabilities": [{"name": "a.b"}], "max_concurrency": "many"},
            "max_concurrency",
        ),
        ({"name": "x", "capabilities": [{"name": "a.b"}], "colour": "red"}, "colour"),
        ({"name": "x", "capabilities": [{"name": "a.b"}, {"name": "a.b"}]}, "listed twice"),
    ],
)
def test_malformed_specs_name_the_problem(bad: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        AgentSpec.model_validate(bad)
    assert field in str(info.value)


def test_a_message_has_exactly_one_destination() -> None:
    from nofx.domain import Message

    assert Message(sender="a", topic="session-1").channel == "topic:session-1"
    assert Message(sender="a", recipient="agt_b").channel == "direct:agt_b"
    for bad in ({"sender": "a"}, {"sender": "a", "topic": "t", "recipient": "r"}):
        with pytest.raises(ValidationError, match="exactly one"):
            Message.model_validate(bad)
    assert Message(sender="a", topic="t").message_id != Message(sender="a", topic="t").message_id
