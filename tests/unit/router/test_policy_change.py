"""A domain's routing policy changed live (issue #16): ``RoutingCore.change_policy`` never
loses a contact, lets offers in flight finish under their terms, keeps agents as they are,
applies changed thresholds at once, and is persisted so a restore uses the domain's own
policy (pure: no broker)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.router.domain import (
    PolicyError,
    RoutingCore,
    RoutingPolicy,
    StalePolicy,
    UnknownQueue,
    policy_from_document,
)
from services.router.domain.model import (
    AgentLoggedIn,
    AgentState,
    AgentStateChanged,
    AgentStatusChanged,
    Channel,
    ContactAbandoned,
    ContactAssigned,
    ContactClosed,
    ContactEnded,
    ContactRequeued,
    ContactTransferred,
    ContactUnroutable,
    OfferAccepted,
    OfferRejected,
    Priority,
    RequeueReason,
)
from tests.unit.router.test_routing_core import T0, agent, call, of, offers

POLICY_CHANGED = RequeueReason.POLICY_CHANGED

#: The configured default: billing and vip (as test_routing_core's ``policy()``).
BASE = """
[routing]
position_refresh_s = 1
[routing.queues.billing]
skills = {billing = 3}
language = "en"
offer_timeout_s = 15
wrap_up_s = 10
service_level_s = 20
[routing.queues.vip]
skills = {billing = 1}
"""
DEFAULT = policy_from_document(BASE, RoutingPolicy.from_dict({"queues": {"x": {}}}))


def document(extra: str = "", *, fallback: str = "", without: str = "") -> str:
    """BASE with ``extra`` tables, a fallback queue, and one queue left out."""
    text = BASE
    if fallback:
        text = text.replace("refresh_s = 1", f'refresh_s = 1\nfallback_queue = "{fallback}"')
    if without:
        head, _, rest = text.partition(f"[routing.queues.{without}]")
        _, _, tail = rest.partition("[routing.queues.")
        text = head + ("[routing.queues." + tail if tail else "")
    return text + extra


def change(core: RoutingCore, text: str, version: int, now: float) -> list[Any]:
    return core.change_policy(policy_from_document(text, DEFAULT), version, now, text)


SALES = """
[routing.queues.sales]
skills = {sales = 2}
"""


def sales_agent(agent_id: str) -> AgentLoggedIn:
    return AgentLoggedIn(agent_id, "t1", (("sales", 5),), ("en",), ((Channel.VOICE, 1),))


def restored(core: RoutingCore) -> RoutingCore:
    """The core as a new owner (or another replica's read view) rebuilds it: from the
    changelog as JSON, with the configured default policy."""
    stored = json.loads(json.dumps(core.snapshot()))
    return RoutingCore.restore(DEFAULT, stored)


# ---------------------------------------------------------------- documents


def test_a_document_without_a_routing_table_is_the_configured_default() -> None:
    assert policy_from_document("[notification]\nx = 1\n", DEFAULT) is DEFAULT


def test_an_invalid_document_is_refused_naming_the_field() -> None:
    with pytest.raises(PolicyError, match=r"^routing\.queues\.billing\.service_level_s: "):
        policy_from_document(BASE.replace("service_level_s = 20", "service_level_s = 0"), DEFAULT)
    with pytest.raises(PolicyError, match=r"^routing\.fallback_queue: unknown queue 'nope'"):
        policy_from_document(document(fallback="nope"), DEFAULT)
    with pytest.raises(PolicyError, match=r"^document: not TOML"):
        policy_from_document("[routing", DEFAULT)
    with pytest.raises(PolicyError, match=r"^routing\.capacity: must be a table"):
        policy_from_document(BASE.replace("refresh_s = 1", "refresh_s = 1\ncapacity = 3"), DEFAULT)
    with pytest.raises(PolicyError, match=r"^routing\.queues\.vip\.steps\.0\.overflow_queues: "):
        policy_from_document(BASE + "steps = [{after_s = 5, overflow_queues = 3}]\n", DEFAULT)
    with pytest.raises(PolicyError, match=r"^routing\.queues\.vip\.steps: must be a list"):
        policy_from_document(BASE + "steps = 3\n", DEFAULT)


# ---------------------------------------------------------------- versions


def test_a_version_not_newer_than_the_applied_one_is_stale_and_changes_nothing() -> None:
    core = RoutingCore(DEFAULT)
    core.apply(call("c1"), T0)
    change(core, document(SALES), 3, T0 + 1)
    core.take_changes()
    before = core.snapshot()
    for version in (3, 2):
        with pytest.raises(StalePolicy, match=f"policy version {version} is stale: version 3"):
            change(core, document(), version, T0 + 2)
    assert core.snapshot() == before
    assert core.take_changes() == {}
    assert core.policy_version == 3


# ---------------------------------------------------------------- queues added


def test_a_queue_added_takes_contacts_at_once() -> None:
    core = RoutingCore(DEFAULT)
    core.apply(sales_agent("s1"), T0)
    with pytest.raises(UnknownQueue):
        core.apply(call("c1", queue="sales"), T0 + 1)
    assert change(core, document(SALES), 1, T0 + 2) == []
    assert offers(core.apply(call("c1", queue="sales"), T0 + 3)) == [("c1", "s1")]
    assert [s.queue for s in core.queue_stats(T0 + 3)] == ["billing", "vip", "sales"]


# ---------------------------------------------------------------- queues removed


def test_a_waiting_contact_of_a_removed_queue_moves_to_the_fallback_keeping_its_place() -> None:
    core = RoutingCore(DEFAULT)
    core.apply(call("early", queue="vip"), T0)  # nobody logged in: they wait
    core.apply(call("late"), T0 + 50)
    out = change(core, document(fallback="billing", without="vip"), 2, T0 + 60)
    assert ContactRequeued("early", "billing", POLICY_CHANGED) in out
    assert core.waiting_ids("billing") == ["early", "late"]  # waited longer: first
    view = core.contact_view("early", T0 + 60)
    assert view is not None
    assert (view.queue, view.status, view.waited) == ("billing", "waiting", 60)
    # the fallback's terms now: billing >= 3 (vip wanted 1)
    assert offers(core.apply(agent("a1", billing=3), T0 + 61)) == [("early", "a1")]


def test_without_a_fallback_it_is_parked_reported_and_still_known() -> None:
    core = RoutingCore(DEFAULT)
    core.apply(call("c1", queue="vip"), T0)
    out = change(core, document(without="vip"), 2, T0 + 5)
    assert out == [ContactUnroutable("c1", "vip", "queue 'vip' removed by policy version 2")]
    view = core.contact_view("c1", T0 + 6)
    assert view is not None
    assert (view.status, view.position, view.estimated_wait) == (
        "parked",
        0,
        None,
    )
    assert "c1" in core.contacts()
    # nobody is offered a parked contact, whoever logs in
    assert offers(core.apply(agent("a1", billing=9), T0 + 7)) == []
    assert [s.queue for s in core.queue_stats(T0 + 7)] == ["billing"]  # vip's stats dropped


def test_an_operator_transfers_a_parked_contact_and_it_routes() -> None:
    core = RoutingCore(DEFAULT)
    core.apply(call("c1", queue="vip"), T0)
    change(core, document(without="vip"), 2, T0 + 5)
    core.apply(agent("a1"), T0 + 6)
    out = core.apply(ContactTransferred("c1", "billing"), T0 + 7)
    assert out[0] == ContactRequeued("c1", "billing", RequeueReason.TRANSFERRED)
    assert offers(out) == [("c1", "a1")]
    with pytest.raises(UnknownQueue):  # and no new contact joins the removed queue
        core.apply(call("c2", queue="vip"), T0 + 8)


@pytest.mark.parametrize(
    ("ending", "abandoned"), [(ContactAbandoned("c1"), True), (ContactEnded("c1"), False)]
)
def test_a_parked_contact_that_ends_is_closed(ending: Any, abandoned: bool) -> None:
    core = RoutingCore(DEFAULT)
    core.apply(call("c1", queue="vip"), T0)
    change(core, document(without="vip"), 2, T0 + 5)
    assert core.apply(ending, T0 + 30) == [ContactClosed("c1", "vip", abandoned, 30.0)]
    assert list(core.contacts()) == []


def test_a_later_version_bringing_the_queue_back_or_a_fallback_unparks() -> None:
    core = RoutingCore(DEFAULT)
    core.apply(call("c1", queue="vip"), T0)
    core.apply(call("c2", queue="vip"), T0 + 1)
    change(core, document(without="vip"), 2, T0 + 5)
    core.apply(ContactTransferred("c2", "billing"), T0 + 6)  # an operator took one
    core.apply(agent("a1", billing=1), T0 + 7)  # no skill for billing: nothing to take
    out = change(core, BASE, 3, T0 + 8)  # a rollback to the first document
    assert out[0] == ContactRequeued("c1", "vip", POLICY_CHANGED)
    assert offers(out) == [("c1", "a1")]

    other = RoutingCore(DEFAULT)
    other.apply(call("c1", queue="vip"), T0)
    change(other, document(without="vip"), 2, T0 + 5)
    out = change(other, document(fallback="billing", without="vip"), 3, T0 + 6)
    assert out == [ContactRequeued("c1", "billing", POLICY_CHANGED)]


def test_a_queue_renamed_with_the_new_name_as_fallback_keeps_its_contacts() -> None:
    core = RoutingCore(DEFAULT)
    core.apply(call("c1", queue="vip"), T0)
    premium = "[routing.queues.premium]\nskills = {billing = 1}\n"
    renamed = document(premium, fallback="premium", without="vip")
    assert change(core, renamed, 2, T0 + 1) == [ContactRequeued("c1", "premium", POLICY_CHANGED)]
    assert offers(core.apply(agent("a1", billing=1), T0 + 2)) == [("c1", "a1")]


# ---------------------------------------------------------------- offers in flight


def in_flight() -> RoutingCore:
    """c1 ringing at a1 and c2 in a2's hands, both in vip."""
    core = RoutingCore(DEFAULT)
    core.apply(agent("a1"), T0)
    core.apply(agent("a2"), T0)
    core.apply(call("c2", queue="vip"), T0 + 1)
    core.apply(OfferAccepted("a1", "c2", "c2#1"), T0 + 2)  # longest idle: a1 (tie: id)
    core.apply(call("c1", queue="vip"), T0 + 3)  # offered to a2
    return core


def test_an_offer_ringing_in_a_removed_queue_is_still_assigned_under_its_terms() -> None:
    core = in_flight()
    assert change(core, document(without="vip"), 2, T0 + 4) == []
    out = core.apply(OfferAccepted("a2", "c1", "c1#1"), T0 + 10)
    assert ContactAssigned("c1#1", "c1", "a2", "vip", 7.0, True) in out
    # the contact in hand ends: its agent wraps up for vip's 10 s (the default's)
    out = core.apply(ContactEnded("c2"), T0 + 20)
    assert AgentStatusChanged("a1", AgentState.WRAP_UP, "wrap-up", "t1") in out
    assert of(ContactClosed, out) == [ContactClosed("c2", "vip", False, 1.0)]


def test_an_offer_in_flight_keeps_its_old_terms_across_a_restore() -> None:
    core = in_flight()
    slower = BASE.replace("[routing.queues.vip]\n", "[routing.queues.vip]\nservice_level_s = 5\n")
    change(core, slower, 2, T0 + 3.5)
    change(core, document(without="vip"), 3, T0 + 4)
    again = restored(core)
    assert again.policy_version == 3
    out = again.apply(OfferAccepted("a2", "c1", "c1#1"), T0 + 10)  # waited 7 s > 5 s
    assert ContactAssigned("c1#1", "c1", "a2", "vip", 7.0, False) in out


def test_an_offer_declined_after_its_queue_was_removed_goes_to_the_fallback() -> None:
    core = in_flight()
    change(core, document(fallback="billing", without="vip"), 2, T0 + 4)
    out = core.apply(OfferRejected("a2", "c1", "c1#1"), T0 + 5)
    assert out[:2] == [
        ContactRequeued("c1", "vip", RequeueReason.REJECTED, "a2"),
        ContactRequeued("c1", "billing", POLICY_CHANGED),
    ]
    # not straight back to who declined it; after the retry delay it may be
    assert offers(core.tick(T0 + 5 + 15)) == [("c1", "a2")]


def test_an_offer_declined_after_its_queue_was_removed_without_fallback_parks() -> None:
    core = in_flight()
    change(core, document(without="vip"), 2, T0 + 4)
    out = core.apply(OfferRejected("a2", "c1", "c1#1"), T0 + 5)
    assert out[:2] == [
        ContactRequeued("c1", "vip", RequeueReason.REJECTED, "a2"),
        ContactUnroutable("c1", "vip", "queue 'vip' removed by policy version 2"),
    ]
    view = core.contact_view("c1", T0 + 6)
    assert view is not None
    assert view.status == "parked"
    assert core.tick(T0 + 100) == []  # no retry, no relaxation, nothing for it


# ---------------------------------------------------------------- agents and counters


def test_agents_keep_their_state_contacts_and_capacity() -> None:
    core = RoutingCore(DEFAULT)
    core.apply(agent("a1", voice=1, chat=2), T0)
    core.apply(agent("a2"), T0)
    core.apply(AgentStateChanged("a2", AgentState.AWAY, "lunch"), T0 + 1)
    core.apply(call("c1", channel=Channel.CHAT), T0 + 2)
    core.apply(OfferAccepted("a1", "c1", "c1#1"), T0 + 3)
    views = sorted(core.agent_views(), key=lambda a: a.agent_id)
    change(core, document(SALES, without="vip"), 2, T0 + 4)
    assert sorted(core.agent_views(), key=lambda a: a.agent_id) == views


def test_kept_queues_keep_their_counters_removed_ones_are_dropped() -> None:
    core = RoutingCore(DEFAULT)
    core.apply(agent("a1"), T0)
    core.apply(call("c1"), T0 + 1)
    core.apply(OfferAccepted("a1", "c1", "c1#1"), T0 + 2)
    core.apply(call("c9", queue="vip"), T0 + 2)
    core.apply(ContactAbandoned("c9"), T0 + 3)
    core.take_changes()
    change(core, document(SALES, without="vip"), 2, T0 + 4)
    stats = {s.queue: s for s in core.queue_stats(T0 + 5)}
    assert (stats["billing"].answered, stats["sales"].answered) == (1, 0)
    assert "vip" not in stats
    changes = core.take_changes()
    assert changes["queue:vip"] is None  # deleted from the changelog too
    assert changes["policy:"]["version"] == 2


# ---------------------------------------------------------------- changed terms


def test_a_lowered_threshold_lets_a_waiting_contact_be_taken_at_once() -> None:
    core = RoutingCore(DEFAULT)
    core.apply(agent("a1", billing=2), T0)
    core.apply(call("c1"), T0 + 1)  # billing >= 3: a1 (2) may not
    core.apply(call("c2", min_billing=3), T0 + 2)  # the caller's own requirement stays
    lowered = BASE.replace("skills = {billing = 3}", "skills = {billing = 2}")
    assert offers(change(core, lowered, 2, T0 + 3)) == [("c1", "a1")]
    core.apply(agent("a2", billing=2), T0 + 4)
    view = core.contact_view("c2", T0 + 5)
    assert view is not None
    assert view.status == "waiting"


def test_a_new_relaxation_step_applies_to_how_long_contacts_have_waited() -> None:
    core = RoutingCore(DEFAULT)
    core.apply(agent("a1", billing=1), T0)
    core.apply(call("c1"), T0 + 1)  # needs billing >= 3
    core.apply(call("c2"), T0 + 50)
    stepped = BASE.replace(
        "service_level_s = 20\n",
        "service_level_s = 20\nsteps = [{after_s = 40, min_proficiency_delta = 2}]\n",
    )
    assert offers(change(core, stepped, 2, T0 + 60)) == [("c1", "a1")]  # waited 59 s
    core.apply(OfferAccepted("a1", "c1", "c1#1"), T0 + 60)
    core.apply(agent("a2", billing=1), T0 + 61)  # c2 waited 11 s: not yet relaxed ...
    assert offers(core.tick(T0 + 89)) == []
    assert offers(core.tick(T0 + 90)) == [("c2", "a2")]  # ... until its 40 s


def test_a_changed_priority_boost_reorders_the_waiting_lines() -> None:
    core = RoutingCore(DEFAULT)
    core.apply(call("normal"), T0)
    core.apply(call("vip", priority=Priority.VIP), T0 + 100)  # boost 120 s: first
    assert core.waiting_ids("billing") == ["vip", "normal"]
    flat = BASE.replace("refresh_s = 1", "refresh_s = 1\naging_s_per_priority = {vip = 0}")
    change(core, flat, 2, T0 + 101)
    assert core.waiting_ids("billing") == ["normal", "vip"]
    assert offers(core.apply(agent("a1"), T0 + 102)) == [("normal", "a1")]


@pytest.mark.parametrize(
    ("strategy", "chosen"), [("longest_idle", "low"), ("most_proficient", "high")]
)
def test_a_changed_strategy_chooses_the_next_agent(strategy: str, chosen: str) -> None:
    core = RoutingCore(DEFAULT)
    core.apply(agent("low", billing=3), T0)
    core.apply(agent("high", billing=9), T0 + 1)
    text = BASE.replace('language = "en"\n', f'language = "en"\nstrategy = "{strategy}"\n')
    change(core, text, 2, T0 + 2)
    assert offers(core.apply(call("c1"), T0 + 3)) == [("c1", chosen)]


# ---------------------------------------------------------------- persisted


def test_the_applied_policy_is_persisted_and_restored() -> None:
    core = RoutingCore(DEFAULT)
    core.apply(call("c1", queue="vip"), T0)
    change(core, document(SALES, without="vip"), 4, T0 + 1)
    again = restored(core)
    assert (again.policy_version, again.policy_document) == (4, core.policy_document)
    assert sorted(again.policy.queues) == ["billing", "sales"]
    assert {k: v for k, v in again.snapshot().items() if k != "meta:"} == {
        k: v for k, v in core.snapshot().items() if k != "meta:"
    }
    view = again.contact_view("c1", T0 + 2)
    assert view is not None
    assert view.status == "parked"
    assert again.take_restore_decisions() == []  # already said by the owner
    assert again.restore_problems == []
    later = [sales_agent("s1"), call("s9", queue="sales")]
    for event in later:
        assert again.apply(event, T0 + 3) == core.apply(event, T0 + 3)


def test_an_older_snapshot_without_a_policy_restores_with_the_default() -> None:
    core = RoutingCore(DEFAULT)
    core.apply(call("c1"), T0)
    stored = core.snapshot()
    assert "policy:" not in stored  # a domain on the default writes none
    again = RoutingCore.restore(DEFAULT, stored)
    assert (again.policy_version, again.policy) == (0, DEFAULT)


def test_a_stored_document_this_build_cannot_read_leaves_the_default_and_says_so() -> None:
    core = RoutingCore(DEFAULT)
    change(core, document(SALES), 2, T0)
    stored = core.snapshot()
    stored["policy:"] = {**stored["policy:"], "document": "[routing]\nnew_field = 1\n"}
    again = RoutingCore.restore(DEFAULT, stored)
    assert again.policy is DEFAULT
    assert again.policy_version == 2  # older records stay stale
    assert again.restore_problems == [
        "policy version 2: routing.new_field: unknown field; the configured default applies"
    ]


def test_a_restore_under_a_changed_default_parks_and_unparks_as_a_change_would() -> None:
    """The configured default itself may change between restarts (domains on version 0)."""
    core = RoutingCore(DEFAULT)
    core.apply(call("c1", queue="vip"), T0)
    without_vip = policy_from_document(document(without="vip"), DEFAULT)
    parked = RoutingCore.restore(without_vip, core.snapshot())
    assert parked.take_restore_decisions() == [
        ContactUnroutable("c1", "vip", "queue 'vip' is no longer configured")
    ]
    back = RoutingCore.restore(DEFAULT, parked.snapshot())
    assert back.take_restore_decisions() == [ContactRequeued("c1", "vip", POLICY_CHANGED)]
    assert back.restore_problems == ["contact c1: back in 'vip'"]
    assert back.waiting_ids("vip") == ["c1"]
    with_fallback = policy_from_document(document(fallback="billing", without="vip"), DEFAULT)
    moved = RoutingCore.restore(with_fallback, parked.snapshot())
    assert moved.take_restore_decisions() == [ContactRequeued("c1", "billing", POLICY_CHANGED)]
    assert moved.waiting_ids("billing") == ["c1"]
