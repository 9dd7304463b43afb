"""The status tables are enforced, and snapshots written before the split still restore."""

from __future__ import annotations

import json

import pytest

from services.router.domain import RoutingCore
from services.router.domain.errors import ForbiddenTransition, RoutingError
from services.router.domain.model import (
    AgentState,
    AgentStatusChanged,
    OfferMade,
    OfferTimedOut,
)
from services.router.domain.records import AgentRecord, ContactRecord
from services.router.domain.states import (
    AGENT_TRANSITIONS,
    CONTACT_TRANSITIONS,
    ContactStatus,
)
from tests.unit.router.test_routing_core import T0, policy

#: Written by the core before it was split (commit 07efc42): agent a1 in wrap-up until
#: T0 + 70, chat c2 ringing at a2 until T0 + 17, voice c3 waiting.
OLD_SNAPSHOT = '{"meta:":{"seq":3,"offer_seq":2},"queue:billing":{"answered":1,"answered_within":1,"abandoned":0,"abandoned_late":0,"arrived":3,"handle_s":59.0},"queue:vip":{"answered":0,"answered_within":0,"abandoned":0,"abandoned_late":0,"arrived":0,"handle_s":0.0},"agent:a1":{"team":"t1","skills":{"billing":5},"languages":["en"],"capacity":{"1":1},"state":5,"reason":"wrap-up","idle_since":1700000000.0,"wrap_until":1700000070.0,"active":{},"offers":{},"handled":1,"last_offer_seq":1},"agent:a2":{"team":"t1","skills":{"billing":5},"languages":["en"],"capacity":{"1":1,"2":2},"state":1,"reason":"","idle_since":1700000000.0,"wrap_until":0.0,"active":{"c2":2},"offers":{"c2#1":"c2"},"handled":0,"last_offer_seq":2},"contact:c2":{"queue":"billing","channel":2,"required":{"billing":3},"optional":{},"language":"en","priority":1,"preferred_agent":"","customer_id":"","enqueued_at":1700000002.0,"seq":2,"status":"offered","agent":"a2","offer_id":"c2#1","offer_expires":1700000017.0,"attempt":1,"step":0,"declined":[],"unroutable_reported":false,"sent_position":0,"sent_estimate":-1.0,"assigned_at":0.0},"contact:c3":{"queue":"billing","channel":1,"required":{"billing":3},"optional":{},"language":"en","priority":1,"preferred_agent":"","customer_id":"","enqueued_at":1700000003.0,"seq":3,"status":"waiting","agent":"","offer_id":"","offer_expires":0.0,"attempt":0,"step":0,"declined":[],"unroutable_reported":false,"sent_position":0,"sent_estimate":-1.0,"assigned_at":0.0}}'


def test_a_snapshot_from_before_the_split_restores_and_snapshots_byte_for_byte() -> None:
    old = json.loads(OLD_SNAPSHOT)
    core = RoutingCore.restore(policy(), old)
    again = core.snapshot()
    assert again.keys() == old.keys()
    for key in old.keys() - {"meta:"}:  # restore moves seq past every contact's, as before
        compact = (",", ":")
        assert json.dumps(again[key], separators=compact) == json.dumps(
            old[key], separators=compact
        )
    assert core.contact_view("c3", T0 + 4).status is ContactStatus.WAITING  # type: ignore[union-attr]
    assert core.contact_view("c2", T0 + 4).status == "offered"  # type: ignore[union-attr]
    timed_out = core.tick(T0 + 17)
    assert [d.contact_id for d in timed_out if isinstance(d, OfferTimedOut)] == ["c2"]
    wrap_over = core.tick(T0 + 70)
    assert [(d.contact_id, d.agent_id) for d in wrap_over if isinstance(d, OfferMade)] == [
        ("c3", "a1")
    ]


def test_every_status_has_a_row_and_rows_name_only_statuses() -> None:
    assert set(CONTACT_TRANSITIONS) == set(ContactStatus)
    stored = {AgentState.AVAILABLE, AgentState.AWAY, AgentState.WRAP_UP, AgentState.LOGGED_OUT}
    assert set(AGENT_TRANSITIONS) == stored
    assert all(targets <= stored for targets in AGENT_TRANSITIONS.values())


def test_a_change_outside_the_table_is_a_bug_not_an_input_error() -> None:
    contact = ContactRecord("c1", "billing", 1, {}, {}, "en", 1, "", "", T0, 1)
    contact.move_to(ContactStatus.OFFERED)
    contact.move_to(ContactStatus.ASSIGNED)
    with pytest.raises(ForbiddenTransition):
        contact.move_to(ContactStatus.OFFERED)  # an assigned contact is never offered
    assert not issubclass(ForbiddenTransition, RoutingError)  # never dead-lettered as input
    agent = AgentRecord("a1", "t1", {}, (), {}, state=AgentState.LOGGED_OUT)
    with pytest.raises(ForbiddenTransition):
        agent.move_to(AgentState.WRAP_UP, "wrap-up")
    with pytest.raises(ForbiddenTransition):
        agent.move_to(AgentState.BUSY, "")  # derived, never stored


def test_agent_statuses_seen_from_outside_include_the_derived_ones() -> None:
    core = RoutingCore.restore(policy(), json.loads(OLD_SNAPSHOT))
    states = {v.agent_id: v.state for v in core.agent_views()}
    assert states == {"a1": AgentState.WRAP_UP, "a2": AgentState.RESERVED}
    out = core.tick(T0 + 17)  # a2 missed the offer: away
    assert AgentStatusChanged("a2", AgentState.AWAY, "missed offer", "t1") in out


def test_a_contact_whose_queue_was_removed_is_reported_unroutable_not_fatal() -> None:
    """Restore never fails on stored state (the service would crash-loop on it)."""
    import tomllib
    from pathlib import Path

    from services.router.domain import RoutingCore, RoutingPolicy
    from services.router.domain import model as m

    config = Path(__file__).resolve().parents[3] / "deploy" / "config" / "router.toml"
    data = tomllib.loads(config.read_text())["routing"]
    core = RoutingCore(RoutingPolicy.from_dict(data))
    core.apply(m.ContactArrived("c1", "tech-ru", m.Channel.VOICE, language="ru"), 1_000.0)
    without = {**data, "queues": {k: v for k, v in data["queues"].items() if k != "tech-ru"}}
    restored = RoutingCore.restore(RoutingPolicy.from_dict(without), core.snapshot())
    view = restored.contact_view("c1", 1_001.0)  # parked, not lost: still visible
    assert view is not None
    assert (view.status, view.estimated_wait) == ("parked", None)
    assert restored.restore_problems == [
        "contact c1: queue 'tech-ru' is no longer configured; parked"
    ]
    assert restored.take_restore_decisions() == [
        m.ContactUnroutable("c1", "tech-ru", "queue 'tech-ru' is no longer configured")
    ]
    assert restored.take_restore_decisions() == []
