"""Every event the core cannot act on is refused with a one-line reason that says why, and
changes nothing (#15 item 2): unknown contact, agent or offer, and a stale offer id with
what became of that offer."""

from __future__ import annotations

import pytest

from services.router.domain import (
    InvalidTransition,
    RoutingCore,
    RoutingError,
    RoutingPolicy,
    StaleOffer,
    UnknownAgent,
    UnknownContact,
    UnknownOffer,
)
from services.router.domain.model import (
    AgentLoggedOut,
    AgentState,
    AgentStateChanged,
    ContactAbandoned,
    ContactEnded,
    ContactTransferred,
    Input,
    OfferAccepted,
    OfferRejected,
)
from tests.unit.router.test_routing_core import T0, agent, call, policy

UNKNOWN = "contact 'ghost' is unknown (it never arrived, or it has closed)"


def refused(core: RoutingCore, event: Input, now: float = T0 + 1) -> RoutingError:
    """The error ``event`` is refused with; the core must be as it was."""
    before = core.snapshot()
    with pytest.raises(RoutingError) as caught:
        core.apply(event, now)
    assert core.snapshot() == before, "a refused event changed the core"
    assert "\n" not in caught.value.reason
    return caught.value


def ringing() -> RoutingCore:
    """a1 and a2 logged in; c1 ringing at a1 (offer c1#1)."""
    core = RoutingCore(policy())
    core.apply(agent("a1"), T0 - 10)
    core.apply(agent("a2"), T0 - 5)
    core.apply(call("c1"), T0)
    return core


@pytest.mark.parametrize(
    "event", [ContactEnded("ghost"), ContactAbandoned("ghost"), ContactTransferred("ghost")]
)
def test_an_event_for_an_unknown_contact_is_refused(event: Input) -> None:
    error = refused(ringing(), event)
    assert isinstance(error, UnknownContact)
    assert error.reason == UNKNOWN


def test_an_end_after_the_contact_closed_is_refused_like_an_unknown_one() -> None:
    core = ringing()
    core.apply(OfferAccepted("a1", "c1", "c1#1"), T0 + 1)
    core.apply(ContactEnded("c1"), T0 + 2)
    error = refused(core, ContactEnded("c1"), T0 + 3)
    assert error.reason == "contact 'c1' is unknown (it never arrived, or it has closed)"


@pytest.mark.parametrize(
    "event",
    [
        AgentLoggedOut("nobody"),
        AgentStateChanged("nobody", AgentState.AVAILABLE, ""),
    ],
)
def test_an_event_for_an_agent_not_logged_in_is_refused(event: Input) -> None:
    error = refused(ringing(), event)
    assert isinstance(error, UnknownAgent)
    assert error.reason == "agent 'nobody' is not logged in"


def test_a_second_logout_is_refused() -> None:
    core = RoutingCore(policy())
    core.apply(agent("a1"), T0)
    core.apply(AgentLoggedOut("a1"), T0 + 1)
    assert refused(core, AgentLoggedOut("a1"), T0 + 2).reason == "agent 'a1' is not logged in"


@pytest.mark.parametrize("answer", [OfferAccepted, OfferRejected])
@pytest.mark.parametrize(
    ("contact_id", "offer_id", "kind", "reason"),
    [
        (
            "ghost",
            "ghost#1",
            UnknownContact,
            "offer 'ghost#1' is not open: contact 'ghost' is unknown "
            "(it never arrived, or it has closed)",
        ),
        (
            "c1",
            "c1#7",
            UnknownOffer,
            "offer 'c1#7' was never made for contact 'c1' (its open offer is 'c1#1')",
        ),
        (
            "c1",
            "bogus",
            UnknownOffer,
            "offer 'bogus' was never made for contact 'c1' (its open offer is 'c1#1')",
        ),
        (  # another contact's offer id
            "c1",
            "c2#1",
            UnknownOffer,
            "offer 'c2#1' was never made for contact 'c1' (its open offer is 'c1#1')",
        ),
    ],
)
def test_an_answer_naming_no_offer_of_the_contact_is_refused(
    answer: type[OfferAccepted] | type[OfferRejected],
    contact_id: str,
    offer_id: str,
    kind: type[RoutingError],
    reason: str,
) -> None:
    error = refused(ringing(), answer("a1", contact_id, offer_id))
    assert isinstance(error, kind)
    assert error.reason == reason


def test_an_answer_from_another_agent_is_refused() -> None:
    error = refused(ringing(), OfferAccepted("a2", "c1", "c1#1"))
    assert isinstance(error, InvalidTransition)
    assert error.reason == "offer 'c1#1' was made to 'a1', not 'a2'"


def test_a_late_answer_says_the_offer_timed_out() -> None:
    core = ringing()
    core.tick(T0 + 16)  # offer_timeout_s = 15: c1 is offered to a2 next (a1 is AWAY)
    error = refused(core, OfferAccepted("a1", "c1", "c1#1"), T0 + 17)
    assert isinstance(error, StaleOffer)
    assert error.reason == ("offer 'c1#1' is no longer open: offer 'c1#2' was made after it")


def test_a_late_answer_to_the_latest_offer_says_what_ended_it() -> None:
    core = RoutingCore(policy())
    core.apply(agent("a1"), T0)
    core.apply(call("c1"), T0)
    core.tick(T0 + 16)  # nobody else to offer it to: c1#1 stays the latest offer
    assert refused(core, OfferRejected("a1", "c1", "c1#1"), T0 + 17).reason == (
        "offer 'c1#1' is no longer open: it timed out unanswered by 'a1' after 15 s"
    )


def test_a_second_answer_says_the_first_one_won() -> None:
    core = ringing()
    core.apply(OfferRejected("a1", "c1", "c1#1"), T0 + 1)  # then offered to a2 as c1#2
    core.apply(OfferAccepted("a2", "c1", "c1#2"), T0 + 2)
    assert refused(core, OfferAccepted("a2", "c1", "c1#2"), T0 + 3).reason == (
        "offer 'c1#2' is no longer open: 'a2' accepted it"
    )
    assert refused(core, OfferAccepted("a1", "c1", "c1#1"), T0 + 3).reason == (
        "offer 'c1#1' is no longer open: offer 'c1#2' was made after it"
    )


def test_a_late_answer_after_a_reject_says_so() -> None:
    core = RoutingCore(policy())
    core.apply(agent("a1"), T0)
    core.apply(call("c1"), T0)
    core.apply(OfferRejected("a1", "c1", "c1#1"), T0 + 1)  # a1 declined: not offered again yet
    assert refused(core, OfferAccepted("a1", "c1", "c1#1"), T0 + 2).reason == (
        "offer 'c1#1' is no longer open: 'a1' rejected it"
    )


def test_a_withdrawn_offer_says_the_agent_became_unavailable() -> None:
    core = RoutingCore(policy())
    core.apply(agent("a1"), T0)
    core.apply(call("c1"), T0)
    core.apply(AgentStateChanged("a1", AgentState.AWAY, "lunch"), T0 + 1)
    assert refused(core, OfferAccepted("a1", "c1", "c1#1"), T0 + 2).reason == (
        "offer 'c1#1' is no longer open: it was withdrawn when 'a1' became unavailable"
    )


def test_an_offer_withdrawn_by_a_transfer_says_so() -> None:
    core = RoutingCore(
        RoutingPolicy.from_dict(
            {"queues": {"billing": {"skills": {"billing": 3}}, "tech": {"skills": {"tech": 3}}}}
        )
    )
    core.apply(agent("a1"), T0)  # billing only: cannot take the contact once it is tech's
    core.apply(call("c1"), T0)
    core.apply(ContactTransferred("c1", "tech"), T0 + 1)  # ringing at a1: withdrawn
    assert refused(core, OfferAccepted("a1", "c1", "c1#1"), T0 + 2).reason == (
        "offer 'c1#1' is no longer open: it was withdrawn when the contact was transferred"
    )


def test_what_became_of_an_offer_survives_a_restore() -> None:
    core = RoutingCore(policy())
    core.apply(agent("a1"), T0)
    core.apply(call("c1"), T0)
    core.apply(OfferRejected("a1", "c1", "c1#1"), T0 + 1)
    restored = RoutingCore.restore(policy(), core.snapshot())
    assert refused(restored, OfferAccepted("a1", "c1", "c1#1"), T0 + 2).reason == (
        "offer 'c1#1' is no longer open: 'a1' rejected it"
    )
