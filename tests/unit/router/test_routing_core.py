"""The routing core, scenario by scenario (pure: no broker, no clock, microseconds)."""

from __future__ import annotations

from typing import Any

import pytest

from services.router.domain import (
    PolicyError,
    RoutingCore,
    RoutingPolicy,
    StaleOffer,
    UnknownAgent,
    UnknownContact,
    UnknownQueue,
    UnknownSkill,
)
from services.router.domain.model import (
    AgentLoggedIn,
    AgentLoggedOut,
    AgentSkillsChanged,
    AgentState,
    AgentStateChanged,
    AgentStatusChanged,
    Channel,
    ContactAbandoned,
    ContactArrived,
    ContactAssigned,
    ContactClosed,
    ContactEnded,
    ContactRequeued,
    ContactUnroutable,
    Decision,
    OfferAccepted,
    OfferMade,
    OfferRejected,
    OfferTimedOut,
    Priority,
    QueuePositionUpdated,
    RequeueReason,
    SkillRequirement,
)

T0 = 1_700_000_000.0


def policy(**queue: Any) -> RoutingPolicy:
    base = {
        "skills": {"billing": 3},
        "language": "en",
        "offer_timeout_s": 15,
        "wrap_up_s": 10,
        "service_level_s": 20,
    }
    base.update(queue)
    return RoutingPolicy.from_dict(
        {"queues": {"billing": base, "vip": {"skills": {"billing": 1}}}, "position_refresh_s": 1}
    )


def agent(
    agent_id: str,
    *,
    billing: int = 5,
    languages: tuple[str, ...] = ("en",),
    voice: int = 1,
    chat: int = 0,
) -> AgentLoggedIn:
    capacity = [(Channel.VOICE, voice)] + ([(Channel.CHAT, chat)] if chat else [])
    return AgentLoggedIn(
        agent_id,
        team="t1",
        skills=(("billing", billing),),
        languages=languages,
        capacity=tuple(capacity),
    )


def call(
    contact_id: str,
    *,
    queue: str = "billing",
    channel: Channel = Channel.VOICE,
    priority: Priority = Priority.NORMAL,
    preferred: str = "",
    language: str = "",
    min_billing: int = 0,
) -> ContactArrived:
    required = (SkillRequirement("billing", min_billing),) if min_billing else ()
    return ContactArrived(
        contact_id,
        queue,
        channel,
        required_skills=required,
        language=language,
        priority=priority,
        preferred_agent_id=preferred,
    )


def offers(decisions: list[Decision]) -> list[tuple[str, str]]:
    return [(d.contact_id, d.agent_id) for d in decisions if isinstance(d, OfferMade)]


def of(kind: type, decisions: list[Decision]) -> list[Any]:
    return [d for d in decisions if isinstance(d, kind)]


def test_an_arriving_call_is_offered_to_the_longest_idle_eligible_agent() -> None:
    core = RoutingCore(policy())
    core.apply(agent("a1"), T0)
    core.apply(agent("a2"), T0 - 60)  # logged in later in the event order, but idle longer
    core.apply(agent("a3", billing=2), T0 - 120)  # not proficient enough
    assert offers(core.apply(call("c1"), T0 + 1)) == [("c1", "a2")]


def test_language_and_proficiency_must_match() -> None:
    core = RoutingCore(policy())
    core.apply(agent("pl-only", languages=("pl",)), T0)
    core.apply(agent("novice", billing=2), T0)
    out = core.apply(call("c1"), T0 + 1)
    assert offers(out) == []
    assert core.waiting_ids("billing") == ["c1"]


def test_most_proficient_strategy_prefers_the_expert() -> None:
    core = RoutingCore(policy(strategy="most_proficient"))
    core.apply(agent("good", billing=6), T0 - 100)
    core.apply(agent("expert", billing=9), T0)
    assert offers(core.apply(call("c1"), T0 + 1)) == [("c1", "expert")]


def test_round_robin_rotates_among_equals() -> None:
    core = RoutingCore(policy(strategy="round_robin", wrap_up_s=0))
    for a in ("a1", "a2", "a3"):
        core.apply(agent(a, voice=1), T0)
    chosen = []
    for n in range(6):
        made = of(OfferMade, core.apply(call(f"c{n}"), T0 + n))
        chosen.append(made[0].agent_id)
        core.apply(OfferAccepted(made[0].agent_id, f"c{n}", made[0].offer_id), T0 + n)
        core.apply(ContactEnded(f"c{n}"), T0 + n)
    assert chosen == ["a1", "a2", "a3", "a1", "a2", "a3"]


def test_an_agent_who_frees_up_takes_the_longest_waiting_contact() -> None:
    core = RoutingCore(policy(wrap_up_s=0))
    core.apply(call("first"), T0)
    core.apply(call("second"), T0 + 5)
    assert offers(core.apply(agent("a1"), T0 + 10)) == [("first", "a1")]


def test_vip_goes_first_but_aging_lets_a_long_wait_overtake() -> None:
    core = RoutingCore(policy())  # vip boost 120 s by default
    core.apply(call("old", priority=Priority.NORMAL), T0)
    core.apply(call("vip", priority=Priority.VIP), T0 + 60)
    assert core.waiting_ids("billing") == ["vip", "old"]
    core.apply(call("older-than-boost"), T0 + 200)
    core.apply(call("late-vip", priority=Priority.VIP), T0 + 400)
    assert core.waiting_ids("billing") == ["vip", "old", "older-than-boost", "late-vip"]


def test_voice_capacity_is_one_and_chats_up_to_three() -> None:
    core = RoutingCore(policy())
    core.apply(agent("a1", voice=1, chat=3), T0)
    chats = [
        of(OfferMade, core.apply(call(f"chat{n}", channel=Channel.CHAT), T0 + n)) for n in range(4)
    ]
    assert [len(c) for c in chats] == [1, 1, 1, 0]
    assert offers(core.apply(call("v1"), T0 + 5)) == []  # voice never mixes with chats


def test_accept_assigns_and_reports_service_level() -> None:
    core = RoutingCore(policy())
    core.apply(agent("a1"), T0)
    made = of(OfferMade, core.apply(call("c1"), T0))[0]
    assert made.offer_id == "c1#1"
    out = core.apply(OfferAccepted("a1", "c1", "c1#1"), T0 + 3)
    assigned = of(ContactAssigned, out)[0]
    assert assigned.within_service_level
    assert assigned.waited == 3
    assert of(AgentStatusChanged, out)[-1].state == AgentState.BUSY


def test_service_level_counts_late_abandons_against_the_queue_but_not_short_ones() -> None:
    core = RoutingCore(policy(service_level_s=20))
    core.apply(agent("a1"), T0)
    core.apply(call("c1"), T0)
    core.apply(OfferAccepted("a1", "c1", "c1#1"), T0 + 5)  # answered within 20 s
    core.apply(call("quick"), T0 + 6)
    core.apply(ContactAbandoned("quick"), T0 + 10)  # hung up after 4 s: not the queue's fault
    core.apply(call("patient"), T0 + 11)
    core.apply(ContactAbandoned("patient"), T0 + 60)  # waited 49 s: a failure
    (stats,) = [s for s in core.queue_stats(T0 + 61) if s.queue == "billing"]
    assert (stats.answered, stats.abandoned, stats.abandoned_late) == (1, 2, 1)
    assert stats.service_level == pytest.approx(1 / 2)


def test_a_rejected_contact_returns_to_its_original_place_in_line() -> None:
    core = RoutingCore(policy())
    core.apply(agent("a1"), T0)
    core.apply(call("c1"), T0)
    core.apply(call("c2"), T0 + 1)
    out = core.apply(OfferRejected("a1", "c1", "c1#1"), T0 + 2)
    assert of(ContactRequeued, out)[0].reason == RequeueReason.REJECTED
    # a1 is not handed the same contact straight back; c2 is next for a1
    assert offers(out) == [("c2", "a1")]
    assert core.waiting_ids("billing") == ["c1"]


def test_a_missed_offer_times_out_requeues_and_sets_the_agent_away() -> None:
    core = RoutingCore(policy())
    core.apply(agent("a1"), T0)
    core.apply(agent("a2"), T0 + 1)
    core.apply(call("c1"), T0 + 2)
    out = core.tick(T0 + 17)
    assert of(OfferTimedOut, out)[0].agent_id == "a1"
    status = [d for d in of(AgentStatusChanged, out) if d.agent_id == "a1"][-1]
    assert (status.state, status.reason) == (AgentState.AWAY, "missed offer")
    assert offers(out) == [("c1", "a2")]
    assert of(OfferMade, out)[0].offer_id == "c1#2"


def test_a_late_accept_after_timeout_is_refused_saying_the_offer_timed_out() -> None:
    core = RoutingCore(policy())
    core.apply(agent("a1"), T0)
    core.apply(call("c1"), T0)
    core.tick(T0 + 16)
    before = core.snapshot()
    with pytest.raises(StaleOffer) as late:
        core.apply(OfferAccepted("a1", "c1", "c1#1"), T0 + 17)
    assert late.value.reason == (
        "offer 'c1#1' is no longer open: it timed out unanswered by 'a1' after 15 s"
    )
    assert core.snapshot() == before
    assert core.contact_view("c1", T0 + 17).status == "waiting"  # type: ignore[union-attr]


def test_logging_out_while_ringing_withdraws_the_offer() -> None:
    core = RoutingCore(policy())
    core.apply(agent("a1"), T0)
    core.apply(call("c1"), T0)
    out = core.apply(AgentLoggedOut("a1"), T0 + 1)
    assert of(ContactRequeued, out)[0].reason == RequeueReason.AGENT_UNAVAILABLE
    assert core.waiting_ids("billing") == ["c1"]


def test_going_away_while_ringing_withdraws_and_no_new_offers_come() -> None:
    core = RoutingCore(policy())
    core.apply(agent("a1"), T0)
    core.apply(call("c1"), T0)
    out = core.apply(AgentStateChanged("a1", AgentState.AWAY, "lunch"), T0 + 1)
    assert of(ContactRequeued, out) == [
        ContactRequeued("c1", "billing", RequeueReason.AGENT_UNAVAILABLE, "a1")
    ]
    assert core.contact_view("c1", T0 + 1).status == "waiting"  # type: ignore[union-attr]
    assert core.waiting_ids("billing") == ["c1"]
    with pytest.raises(StaleOffer) as late:  # withdrawn: too late
        core.apply(OfferAccepted("a1", "c1", "c1#1"), T0 + 2)
    assert late.value.reason == (
        "offer 'c1#1' is no longer open: it was withdrawn when 'a1' became unavailable"
    )
    assert offers(core.apply(call("c2"), T0 + 2)) == []


def test_wrap_up_is_honoured_before_the_next_offer() -> None:
    core = RoutingCore(policy(wrap_up_s=10))
    core.apply(agent("a1"), T0)
    core.apply(call("c1"), T0)
    core.apply(OfferAccepted("a1", "c1", "c1#1"), T0 + 1)
    out = core.apply(ContactEnded("c1"), T0 + 60)
    assert of(ContactClosed, out) == [ContactClosed("c1", "billing", False, 1.0)]
    assert offers(core.apply(call("c2"), T0 + 61)) == []
    assert offers(core.tick(T0 + 70)) == [("c2", "a1")]


def test_abandon_while_waiting_or_ringing_closes_once_and_frees_the_agent() -> None:
    core = RoutingCore(policy())
    core.apply(agent("a1"), T0)
    core.apply(call("c1"), T0)
    core.apply(call("c2"), T0 + 1)
    out = core.apply(ContactAbandoned("c1"), T0 + 2)  # c1 was ringing at a1
    assert of(ContactClosed, out)[0].abandoned
    assert offers(out) == [("c2", "a1")]
    with pytest.raises(UnknownContact) as again:  # closed: the repeat is answered, not applied
        core.apply(ContactAbandoned("c1"), T0 + 3)
    assert again.value.reason == "contact 'c1' is unknown (it never arrived, or it has closed)"


def test_relaxation_lowers_proficiency_after_the_configured_wait() -> None:
    core = RoutingCore(policy(steps=[{"after_s": 30, "min_proficiency_delta": 2}]))
    core.apply(agent("junior", billing=1), T0)
    assert offers(core.apply(call("c1"), T0)) == []
    assert offers(core.tick(T0 + 29)) == []
    made = of(OfferMade, core.tick(T0 + 30))
    assert [(m.agent_id, m.relaxation_step) for m in made] == [("junior", 1)]


def test_preferred_agent_is_waited_for_then_released() -> None:
    core = RoutingCore(policy(steps=[{"after_s": 20, "release_preferred_agent": True}]))
    core.apply(agent("last-agent"), T0)
    core.apply(agent("other"), T0 - 100)
    core.apply(AgentStateChanged("last-agent", AgentState.AWAY, "break"), T0)
    assert offers(core.apply(call("c1", preferred="last-agent"), T0 + 1)) == []
    assert offers(core.tick(T0 + 21)) == [("c1", "other")]


def test_overflow_queue_opens_after_its_step() -> None:
    pol = RoutingPolicy.from_dict(
        {
            "queues": {
                "billing-pl": {
                    "skills": {"billing": 1},
                    "language": "pl",
                    "steps": [{"after_s": 60, "overflow_queues": ["billing-en"]}],
                },
                "billing-en": {"skills": {"billing": 1}, "language": "en"},
            }
        }
    )
    core = RoutingCore(pol)
    core.apply(agent("en-agent"), T0)
    assert offers(core.apply(call("c1", queue="billing-pl"), T0)) == []
    assert offers(core.tick(T0 + 60)) == [("c1", "en-agent")]


def test_a_contact_nobody_logged_in_can_take_is_reported_unroutable_once() -> None:
    core = RoutingCore(policy())
    core.apply(agent("a1", languages=("pl",)), T0)
    out = core.apply(call("c1"), T0)
    assert [u.contact_id for u in of(ContactUnroutable, out)] == ["c1"]
    assert of(ContactUnroutable, core.tick(T0 + 1000)) == []


def test_positions_and_estimates_are_published_when_they_change() -> None:
    core = RoutingCore(policy())
    core.apply(agent("a1"), T0)
    core.apply(call("c0"), T0)  # takes the agent
    core.apply(call("c1"), T0)
    core.apply(call("c2"), T0)
    first = of(QueuePositionUpdated, core.tick(T0 + 1))
    assert [(u.contact_id, u.position) for u in first] == [("c1", 1), ("c2", 2)]
    assert of(QueuePositionUpdated, core.tick(T0 + 5)) == []  # nothing moved
    core.apply(ContactAbandoned("c1"), T0 + 6)
    moved = of(QueuePositionUpdated, core.tick(T0 + 8))
    assert [(u.contact_id, u.position) for u in moved] == [("c2", 1)]


def test_a_contact_nobody_logged_in_can_take_gets_no_estimate_not_a_made_up_one() -> None:
    """It used to be told position x average handle time (30 s by default) although no
    agent could ever take it; now the wait is unknown until someone who could logs in."""
    core = RoutingCore(policy())
    core.apply(agent("a1"), T0)
    core.apply(call("c0"), T0)  # takes a1
    core.apply(call("c1"), T0)  # English: a1 could take it once free
    core.apply(call("c2", language="pl"), T0)  # nobody speaks Polish
    first = {u.contact_id: u for u in of(QueuePositionUpdated, core.tick(T0 + 1))}
    assert (first["c1"].position, first["c2"].position) == (1, 2)
    assert first["c1"].estimated_wait is not None
    assert first["c1"].estimated_wait > 0
    assert first["c2"].estimated_wait is None
    view = core.contact_view("c2", T0 + 1)
    assert view is not None
    assert (view.position, view.estimated_wait) == (2, None)
    assert of(QueuePositionUpdated, core.tick(T0 + 5)) == []  # "unknown" is told once
    # a Polish speaker logs in (chat only, so the call still waits): now it has an estimate
    core.apply(agent("pl-1", languages=("pl",), voice=0, chat=1), T0 + 6)
    again = {u.contact_id: u for u in of(QueuePositionUpdated, core.tick(T0 + 8))}
    assert again["c2"].position == 2
    assert again["c2"].estimated_wait is not None
    # and loses it again when they leave
    core.apply(AgentLoggedOut("pl-1"), T0 + 9)
    gone = {u.contact_id: u for u in of(QueuePositionUpdated, core.tick(T0 + 11))}
    assert gone["c2"].estimated_wait is None


def test_a_queue_nobody_logged_in_can_serve_has_no_estimate_for_a_new_arrival() -> None:
    core = RoutingCore(policy())
    stats = {s.queue: s for s in core.queue_stats(T0)}
    assert stats["billing"].estimated_wait is None  # was 30 s with nobody logged in
    core.apply(agent("a1"), T0)
    stats = {s.queue: s for s in core.queue_stats(T0)}
    assert stats["billing"].estimated_wait is not None


def test_unknown_queue_is_rejected_and_duplicates_are_ignored() -> None:
    core = RoutingCore(policy())
    with pytest.raises(UnknownQueue):
        core.apply(call("c1", queue="nope"), T0)
    core.apply(call("c1"), T0)
    assert core.apply(call("c1"), T0 + 1) == []


def test_a_skills_change_for_an_agent_logged_out_mid_call_is_refused_and_staffing_stays_true() -> (
    None
):
    """Logged out with a call still in hand, the agent is out of the staffing counts; a
    skills change then is refused (as a state change is), not counted for nobody."""
    core = RoutingCore(policy())
    core.apply(agent("a1"), T0)
    [offer] = of(OfferMade, core.apply(call("c1"), T0))
    core.apply(OfferAccepted("a1", "c1", offer.offer_id), T0 + 1)
    core.apply(AgentLoggedOut("a1"), T0 + 2)
    with pytest.raises(UnknownAgent):
        core.apply(AgentSkillsChanged("a1", (("billing", 9),), ("en",)), T0 + 3)
    assert {q.queue: q.staffed_agents for q in core.queue_stats(T0 + 3)} == {"billing": 0, "vip": 0}
    core.apply(agent("a1"), T0 + 4)
    assert {q.queue: q.staffed_agents for q in core.queue_stats(T0 + 4)} == {"billing": 1, "vip": 1}


def test_policy_errors_name_the_field() -> None:
    with pytest.raises(PolicyError, match=r"queues\.billing\.offer_timeout_s"):
        policy(offer_timeout_s=0)
    with pytest.raises(PolicyError, match=r"queues\.billing\.strategy"):
        policy(strategy="fastest")
    with pytest.raises(PolicyError, match=r"queues\.billing\.steps\.0\.overflow_queues"):
        policy(steps=[{"after_s": 5, "overflow_queues": ["ghost"]}])


def test_the_agent_index_stays_proportional_to_the_agents_over_many_contacts() -> None:
    core = RoutingCore(policy(wrap_up_s=0))
    agents = [f"a{n}" for n in range(5)]
    for n, agent_id in enumerate(agents):
        core.apply(agent(agent_id), T0 + n)
    sizes = []
    for n in range(20_000):  # every contact re-indexes the agent it visits, twice
        now = T0 + 10 + n
        (contact, agent_id), *_ = offers(core.apply(call(f"c{n}"), now))
        core.apply(OfferAccepted(agent_id, contact, f"{contact}#1"), now)
        core.apply(ContactEnded(contact), now)
        sizes.append(core.index_entries())
    assert max(sizes) < 2_000, "stale index entries must be dropped as agents change"
    # and after all that compaction, routing still picks the longest idle agent
    first_free = agents[20_000 % len(agents)]
    assert offers(core.apply(call("last"), T0 + 30_000)) == [("last", first_free)]


def test_snapshot_and_restore_give_an_identical_core() -> None:
    pol = policy()
    original = RoutingCore(pol)
    events: list[Any] = [agent("a1"), agent("a2"), call("c1"), call("c2"), call("c3")]
    for n, event in enumerate(events):
        original.apply(event, T0 + n)
    original.apply(OfferAccepted("a1", "c1", "c1#1"), T0 + 6)
    snapshots = original.take_changes()
    restored = RoutingCore.restore(pol, {k: v for k, v in snapshots.items() if v is not None})
    later: list[Any] = [
        ContactEnded("c1"),
        AgentLoggedIn("a3", skills=(("billing", 9),), languages=("en",)),
    ]
    for event in later:
        assert original.apply(event, T0 + 10) == restored.apply(event, T0 + 10)
    assert original.tick(T0 + 30) == restored.tick(T0 + 30)


def test_a_contact_requiring_a_skill_no_queue_configures_is_refused_whole() -> None:
    core = RoutingCore(policy())
    core.apply(agent("a1"), T0)
    before = core.snapshot()
    core.take_changes()
    with pytest.raises(UnknownSkill, match="'knitting'"):
        core.apply(
            ContactArrived("c1", "billing", Channel.VOICE, (SkillRequirement("knitting", 1),)),
            T0,
        )
    with pytest.raises(UnknownSkill, match="'knitting'"):
        core.apply(
            ContactArrived(
                "c2", "billing", Channel.VOICE, optional_skills=(SkillRequirement("knitting", 1),)
            ),
            T0,
        )
    assert core.snapshot() == before
    assert core.take_changes() == {}
    assert list(core.contacts()) == []


def test_without_wrap_up_the_next_offer_follows_the_ended_contacts_close() -> None:
    """Read in order, the decisions never show an agent holding two voice calls."""
    core = RoutingCore(policy(wrap_up_s=0))
    core.apply(agent("a1"), T0)
    core.apply(call("c1"), T0)
    core.apply(call("c2"), T0 + 1)
    core.apply(OfferAccepted("a1", "c1", "c1#1"), T0 + 2)
    out = core.apply(ContactEnded("c1"), T0 + 60)
    kinds = [(type(d).__name__, getattr(d, "contact_id", "")) for d in out]
    assert kinds.index(("ContactClosed", "c1")) < kinds.index(("OfferMade", "c2"))


def test_wrap_up_ends_on_time_even_if_the_agent_changed_during_it() -> None:
    """A second chat ending during wrap-up used to strand the agent in WRAP_UP for good."""
    core = RoutingCore(policy(wrap_up_s=10))
    core.apply(agent("a1", voice=0, chat=2), T0)
    core.apply(call("c1", channel=Channel.CHAT), T0)
    core.apply(call("c2", channel=Channel.CHAT), T0)
    core.apply(OfferAccepted("a1", "c1", "c1#1"), T0 + 1)
    core.apply(OfferAccepted("a1", "c2", "c2#1"), T0 + 1)
    core.apply(ContactEnded("c1"), T0 + 5)  # wrap-up until T0 + 15
    core.apply(ContactEnded("c2"), T0 + 6)  # changes the agent during wrap-up
    core.apply(AgentSkillsChanged("a1", (("billing", 6),), ("en",)), T0 + 7)
    out = core.tick(T0 + 15)
    assert AgentStatusChanged("a1", AgentState.AVAILABLE, "", "t1") in out
    core.apply(call("c3", channel=Channel.CHAT), T0 + 16)
    assert core.contact_view("c3", T0 + 16).status == "offered"  # type: ignore[union-attr]


def test_an_agent_logging_in_takes_a_contact_whose_overflow_step_opened_its_queue() -> None:
    """The freed-agent path: the agent lacks the contact's own skill but has the skill of
    the queue the contact overflowed into."""
    overflow = RoutingPolicy.from_dict(
        {
            "queues": {
                "tech": {
                    "skills": {"tech": 3},
                    "steps": [{"after_s": 30, "overflow_queues": ["billing"]}],
                },
                "billing": {"skills": {"billing": 1}},
            }
        }
    )
    core = RoutingCore(overflow)
    core.apply(call("c1", queue="tech"), T0)
    early = RoutingCore.restore(overflow, core.snapshot())
    assert offers(early.apply(agent("a1"), T0 + 29)) == []  # the step has not opened yet
    core.tick(T0 + 30)
    assert offers(core.apply(agent("a1"), T0 + 31)) == [("c1", "a1")]


def test_a_closed_contact_is_deleted_from_the_changelog() -> None:
    """docs/data-map.md: the router keeps a contact (and its customer id) only while it is in
    the system; closing writes a deletion."""
    core = RoutingCore(policy())
    core.apply(agent("a1"), T0)
    core.apply(call("c1"), T0)
    core.apply(OfferAccepted("a1", "c1", "c1#1"), T0 + 1)
    assert core.take_changes()["contact:c1"] is not None
    core.apply(ContactEnded("c1"), T0 + 60)
    assert core.take_changes()["contact:c1"] is None


def test_a_capacity_list_sets_every_channel_it_does_not_name_to_zero() -> None:
    """README: a login's `capacity` names channels; every other channel gets 0."""
    core = RoutingCore(policy())
    core.apply(agent("a1", voice=1), T0)  # names voice only
    assert offers(core.apply(call("c1", channel=Channel.CHAT), T0 + 1)) == []
    assert offers(core.apply(call("c2"), T0 + 2)) != []
