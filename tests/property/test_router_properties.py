"""Invariants of the routing core under random interleavings of events (hypothesis)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.router.domain import RoutingCore, RoutingError, RoutingPolicy, policy_from_document
from services.router.domain.model import (
    AgentLoggedIn,
    AgentLoggedOut,
    AgentState,
    AgentStateChanged,
    Channel,
    ContactAbandoned,
    ContactArrived,
    ContactAssigned,
    ContactClosed,
    ContactEnded,
    ContactRequeued,
    OfferAccepted,
    OfferMade,
    OfferRejected,
    OfferTimedOut,
    Priority,
)

POLICY = RoutingPolicy.from_dict(
    {
        "queues": {
            "billing": {
                "skills": {"billing": 5},
                "language": "en",
                "offer_timeout_s": 10,
                "wrap_up_s": 5,
                "steps": [{"after_s": 20, "min_proficiency_delta": 3}],
            },
            "tech": {
                "skills": {"tech": 3},
                "offer_timeout_s": 10,
                "wrap_up_s": 0,
                "strategy": "least_occupied",
                "steps": [{"after_s": 30, "overflow_queues": ["billing"]}],
            },
        },
    }
)
AGENTS = {
    "a1": AgentLoggedIn(
        "a1",
        skills=(("billing", 7),),
        languages=("en",),
        capacity=((Channel.VOICE, 1), (Channel.CHAT, 1)),
    ),
    "a2": AgentLoggedIn(
        "a2",
        skills=(("billing", 3), ("tech", 5)),
        languages=("en", "pl"),
        capacity=((Channel.CHAT, 2),),
    ),
    "a3": AgentLoggedIn(
        "a3", skills=(("tech", 9),), languages=("pl",), capacity=((Channel.VOICE, 1),)
    ),
}
CONTACTS = [f"c{n}" for n in range(10)]
#: Policy versions a domain may be changed to live (issue #16): queues removed with and
#: without a fallback, thresholds and strategies changed, and back to both queues.
_BILLING = """
[routing.queues.billing]
skills = {billing = %d}
language = "en"
offer_timeout_s = 10
wrap_up_s = 5
steps = [{after_s = 20, min_proficiency_delta = 3}]
"""
_TECH = """
[routing.queues.tech]
skills = {tech = 3}
offer_timeout_s = 10
wrap_up_s = 0
strategy = "%s"
"""
DOCUMENTS = [
    "[routing]\n" + _BILLING % 5 + _TECH % "least_occupied",
    '[routing]\nfallback_queue = "billing"\n' + _BILLING % 5,
    "[routing]\n" + _TECH % "round_robin",
    '[routing]\nfallback_queue = "tech"\n' + _BILLING % 3 + _TECH % "most_proficient",
]

step = st.one_of(
    st.tuples(
        st.just("arrive"),
        st.sampled_from(CONTACTS),
        st.sampled_from(["billing", "tech"]),
        st.sampled_from([Channel.VOICE, Channel.CHAT]),
        st.sampled_from(list(Priority)),
    ),
    st.tuples(st.just("login"), st.sampled_from(list(AGENTS))),
    st.tuples(st.just("logout"), st.sampled_from(list(AGENTS))),
    st.tuples(st.just("away"), st.sampled_from(list(AGENTS))),
    st.tuples(st.just("ready"), st.sampled_from(list(AGENTS))),
    st.tuples(st.just("accept"), st.integers(0, 10)),
    st.tuples(st.just("reject"), st.integers(0, 10)),
    st.tuples(st.just("end"), st.sampled_from(CONTACTS)),
    st.tuples(st.just("abandon"), st.sampled_from(CONTACTS)),
    st.tuples(st.just("wait"), st.floats(0.5, 40)),
    st.tuples(st.just("policy"), st.integers(0, len(DOCUMENTS) - 1)),
)


def applied_or_refused(core: RoutingCore, event: Any, now: float) -> list[Any]:
    """The decisions, or none if the core refused the event (an agent not logged in, a
    contact not known): then it must have changed nothing."""
    before = core.snapshot()
    try:
        return core.apply(event, now)
    except RoutingError:
        assert core.snapshot() == before, f"refused {event} but changed state"
        return []


@settings(max_examples=500, deadline=None)
@given(st.lists(step, max_size=60))
def test_routing_invariants_hold_for_any_interleaving(steps: list[tuple[Any, ...]]) -> None:
    core = RoutingCore(POLICY)
    now = 1_000.0
    outstanding: dict[str, tuple[str, str]] = {}  # contact -> (offer id, agent)
    holding: dict[str, set[str]] = {a: set() for a in AGENTS}  # agent -> contacts in hand
    closed: set[str] = set()
    arrived: set[str] = set()
    channel_of: dict[str, Channel] = {}
    offered_ever: list[OfferMade] = []
    version = 0

    def check(decisions: list[Any]) -> None:
        for d in decisions:
            if isinstance(d, OfferMade):
                assert d.contact_id not in outstanding, "a contact on two offers"
                assert d.contact_id not in closed
                outstanding[d.contact_id] = (d.offer_id, d.agent_id)
                holding[d.agent_id].add(d.contact_id)
                offered_ever.append(d)
                view = {v.agent_id: v for v in core.agent_views()}[d.agent_id]
                assert view.state != AgentState.LOGGED_OUT
                caps = dict(AGENTS[d.agent_id].capacity)
                in_hand = [channel_of[c] for c in holding[d.agent_id]]
                for channel in set(in_hand):
                    assert in_hand.count(channel) <= caps.get(channel, 0), "capacity exceeded"
                assert not (Channel.VOICE in in_hand and len(in_hand) > 1), "voice mixed"
            elif isinstance(d, ContactAssigned):
                assert outstanding.pop(d.contact_id)[1] == d.agent_id
            elif isinstance(d, OfferTimedOut | ContactRequeued):
                outstanding.pop(d.contact_id, None)
                if d.agent_id in holding:
                    holding[d.agent_id].discard(d.contact_id)
            elif isinstance(d, ContactClosed):
                assert d.contact_id not in closed, "closed twice"
                closed.add(d.contact_id)
                outstanding.pop(d.contact_id, None)
                for agent_set in holding.values():
                    agent_set.discard(d.contact_id)

    for item in steps:
        kind = item[0]
        decisions: list[Any] = []
        if kind == "arrive" and item[1] not in arrived:
            channel_of[item[1]] = item[3]
            arrival = ContactArrived(item[1], item[2], item[3], priority=item[4])
            decisions = applied_or_refused(core, arrival, now)  # its queue may be gone
            if item[1] in core.contacts():
                arrived.add(item[1])
        elif kind == "policy":
            text = DOCUMENTS[item[1]]
            version += 1
            decisions = core.change_policy(policy_from_document(text, POLICY), version, now, text)
            for d in decisions:  # a removed queue's contact waits elsewhere, or is parked
                assert not isinstance(d, ContactClosed | OfferTimedOut), d
        elif kind == "login":
            decisions = core.apply(AGENTS[item[1]], now)
        elif kind == "logout":
            decisions = applied_or_refused(core, AgentLoggedOut(item[1]), now)
        elif kind in ("away", "ready"):
            state = AgentState.AWAY if kind == "away" else AgentState.AVAILABLE
            decisions = applied_or_refused(core, AgentStateChanged(item[1], state, "break"), now)
        elif kind in ("accept", "reject") and outstanding:
            contact_id, (offer_id, agent_id) = sorted(outstanding.items())[
                item[1] % len(outstanding)
            ]
            event = (OfferAccepted if kind == "accept" else OfferRejected)(
                agent_id, contact_id, offer_id
            )
            decisions = core.apply(event, now)
        elif kind == "end":
            decisions = applied_or_refused(core, ContactEnded(item[1]), now)
        elif kind == "abandon":
            decisions = applied_or_refused(core, ContactAbandoned(item[1]), now)
        elif kind == "wait":
            now += item[1]
            decisions = core.tick(now)
        check(decisions)
        check(core.tick(now))

    # every contact that arrived is closed exactly once or still known to the router
    known = set(core.contacts())
    for contact_id in arrived:
        assert (contact_id in closed) != (contact_id in known), f"{contact_id} lost or ghost"
    # a new owner rebuilds the domain with its own policy, every contact where it was
    again = RoutingCore.restore(POLICY, core.snapshot())
    assert again.policy_version == version
    assert list(again.policy.queues) == list(core.policy.queues)
    assert again.take_restore_decisions() == []
    for contact_id in known:
        assert again.contact_view(contact_id, now) == core.contact_view(contact_id, now)
    # every offer met the contact's language requirement as relaxed (billing is en-only)
    for offer in offered_ever:
        if offer.queue == "billing" and offer.relaxation_step == 0:
            assert "en" in AGENTS[offer.agent_id].languages
