"""Atomic apply: each pure core applies an input wholly or not at all (hypothesis).

Random interleavings of ordinary inputs and inputs a core must refuse (unknown agents,
queues and contacts, answers from the wrong agent, impossible states, out-of-range
values, commands on escalations nobody may touch). Whenever a core refuses, it must
keep no trace: the same snapshot, nothing new for ``take_changes`` (the changelog), the
same next deadline, and the same internal state, timers and indexes included (a stray
timer would fire later). And a refused input must be as if it never arrived: a twin
core that never saw it makes the same decisions, call for call, and ends in the same state.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from hypothesis import example, given, settings
from hypothesis import strategies as st

from services.escalation.domain import (
    CommandError,
    ContactAbandoned,
    ContactAssigned,
    ContactClosed,
    ContactEnded,
    ContactHeld,
    ContactPaused,
    ContactReopened,
    ContactRequeued,
    ContactResumed,
    ContactTransferred,
    ContactUnroutable,
    Disposition,
    EscalationChange,
    EscalationCore,
    ManagerRequested,
    PauseReason,
    RejectedInput,
    SurveyResult,
)
from services.escalation.domain import ContactArrived as Arrived
from services.escalation.domain import Customer as EscCustomer
from services.escalation.domain import Input as EscalationInput
from services.notifier.domain import core as n
from services.notifier.domain.core import NotifierCore, NotifierPolicy
from services.notifier.domain.errors import NotifierError
from services.router.domain import RoutingCore, RoutingError
from services.router.domain import model as r
from tests.property.test_router_properties import AGENTS, CONTACTS, POLICY
from tests.unit.escalation.scenario import T0, make_policy
from tests.unit.notifier.test_notifier_core import CATALOG, CHAT, EMAIL, SMS, VOICE

EXAMPLES = 150
_T = TypeVar("_T")


class Core(Protocol):
    def take_changes(self) -> dict[str, dict[str, Any] | None]: ...
    def snapshot(self) -> dict[str, dict[str, Any]]: ...
    def next_deadline(self) -> float | None: ...


def internals(core: Core) -> dict[str, Any]:
    """Everything the core holds (policy and templates aside), as a value to compare."""
    return copy.deepcopy({k: v for k, v in vars(core).items() if k not in ("policy", "catalog")})


def attempt(
    core: Core, run: Callable[[], _T], refusal: type[Exception] | tuple[type[Exception], ...]
) -> tuple[_T | None, Exception | None]:
    """Run one input; if the core refuses it, check it kept no trace of it."""
    core.take_changes()  # the adapter drained what earlier inputs changed
    deadline = core.next_deadline()  # first: it may sweep stale timer entries
    state, snapshot = internals(core), json_copy(core.snapshot())
    try:
        return run(), None
    except refusal as exc:
        refused = exc
    assert internals(core) == state, f"refused ({refused!r}) but the core changed"
    assert json_copy(core.snapshot()) == snapshot
    assert core.next_deadline() == deadline
    assert core.take_changes() == {}, "a refused input left changelog entries"
    return None, refused


def json_copy(value: object) -> Any:
    """What the changelog would store (and a copy, so later changes cannot alias it)."""
    return json.loads(json.dumps(value))


# --- router ------------------------------------------------------------------------------

AGENT_IDS = st.sampled_from(sorted(AGENTS))
ROUTER_STEP = st.one_of(
    # ordinary inputs (a core may still refuse some, e.g. an agent not logged in)
    st.tuples(
        st.just("arrive"),
        st.sampled_from(CONTACTS),
        st.sampled_from(["billing", "tech"]),
        st.sampled_from([r.Channel.VOICE, r.Channel.CHAT]),
        st.sampled_from(list(r.Priority)),
    ),
    st.tuples(st.just("login"), AGENT_IDS),
    st.tuples(st.just("logout"), AGENT_IDS),
    st.tuples(
        st.just("state"),
        AGENT_IDS,
        st.sampled_from([r.AgentState.AVAILABLE, r.AgentState.AWAY, r.AgentState.LOGGED_OUT]),
    ),
    st.tuples(
        st.just("skills"),
        AGENT_IDS,
        st.sampled_from([(("billing", 6),), (("tech", 4), ("billing", 2)), ()]),
    ),
    st.tuples(st.just("answer"), st.integers(0, 10), st.booleans()),
    st.tuples(st.just("end"), st.sampled_from(CONTACTS)),
    st.tuples(st.just("abandon"), st.sampled_from(CONTACTS)),
    st.tuples(st.just("transfer"), st.sampled_from(CONTACTS), st.sampled_from(["billing", "tech"])),
    st.tuples(st.just("wait"), st.floats(0.5, 40)),
    # inputs the router must refuse
    st.tuples(st.just("ghost agent"), st.booleans()),
    st.tuples(
        st.just("impossible state"),
        AGENT_IDS,
        st.sampled_from([r.AgentState.BUSY, r.AgentState.WRAP_UP, r.AgentState.RESERVED]),
    ),
    st.tuples(st.just("unknown queue"), st.integers(0, 3)),
    st.tuples(st.just("transfer to unknown queue"), st.integers(0, 10)),
    st.tuples(st.just("wrong agent answers"), st.integers(0, 10), st.booleans()),
)


def router_input(
    step: tuple[Any, ...], core: RoutingCore, offers: dict[str, tuple[str, str]]
) -> tuple[r.Input | None, bool]:
    """The input for ``step`` (None: nothing to do now) and whether it must be refused."""
    match step:
        case ("arrive", contact, queue, channel, priority):
            return r.ContactArrived(contact, queue, channel, priority=priority), False
        case ("login", agent):
            return AGENTS[agent], False
        case ("logout", agent):
            return r.AgentLoggedOut(agent), False
        case ("state", agent, state):
            return r.AgentStateChanged(agent, state, "break"), False
        case ("skills", agent, skills):
            return r.AgentSkillsChanged(agent, skills, ("en",)), False
        case ("answer", pick, accept) if offers:
            contact, (offer_id, agent) = sorted(offers.items())[pick % len(offers)]
            kind = r.OfferAccepted if accept else r.OfferRejected
            return kind(agent, contact, offer_id), False
        case ("end", contact):
            return r.ContactEnded(contact), False
        case ("abandon", contact):
            return r.ContactAbandoned(contact), False
        case ("transfer", contact, queue):
            return r.ContactTransferred(contact, queue), False
        case ("ghost agent", skills):
            ghost = "nobody"
            if skills:
                return r.AgentSkillsChanged(ghost, (("billing", 9),)), True
            return r.AgentStateChanged(ghost, r.AgentState.AVAILABLE), True
        case ("impossible state", agent, state):
            return r.AgentStateChanged(agent, state), True
        case ("unknown queue", n_):
            return r.ContactArrived(f"x{n_}", "nowhere", r.Channel.CHAT), True
        case ("transfer to unknown queue", pick) if known := sorted(core.contacts()):
            return r.ContactTransferred(known[pick % len(known)], "nowhere"), True
        case ("wrong agent answers", pick, accept) if offers:
            contact, (offer_id, agent) = sorted(offers.items())[pick % len(offers)]
            other = next(a for a in sorted(AGENTS) if a != agent)
            kind = r.OfferAccepted if accept else r.OfferRejected
            return kind(other, contact, offer_id), True
    return None, False


def track_offers(decisions: list[r.Decision], offers: dict[str, tuple[str, str]]) -> None:
    for d in decisions:
        if isinstance(d, r.OfferMade):
            offers[d.contact_id] = (d.offer_id, d.agent_id)
        elif isinstance(
            d, r.ContactAssigned | r.OfferTimedOut | r.ContactRequeued | r.ContactClosed
        ):
            offers.pop(d.contact_id, None)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(ROUTER_STEP, max_size=50))
def test_the_router_refuses_an_input_wholly_and_a_refused_input_is_as_if_never_sent(
    steps: list[tuple[Any, ...]],
) -> None:
    """A RoutingError leaves state, timers, indexes and the changelog untouched, and a twin
    router that never saw the refused inputs decides exactly the same, call for call."""
    core, twin = RoutingCore(POLICY), RoutingCore(POLICY)
    offers: dict[str, tuple[str, str]] = {}
    now = 1_000.0
    for step in steps:
        if step[0] == "wait":
            now += step[1]
            decisions = core.tick(now)
            assert twin.tick(now) == decisions
            track_offers(decisions, offers)
            continue
        event, must_refuse = router_input(step, core, offers)
        if event is None:
            continue
        decisions, refused = attempt(core, lambda e=event, t=now: core.apply(e, t), RoutingError)
        assert refused is not None or not must_refuse, f"{event} was not refused"
        if decisions is not None:
            assert twin.apply(event, now) == decisions
            track_offers(decisions, offers)
    assert core.tick(now) == twin.tick(now)
    assert json_copy(core.snapshot()) == json_copy(twin.snapshot())


# --- escalation --------------------------------------------------------------------------

ESC_CONTACTS = st.sampled_from(["c1", "c2", "c3"])
QUEUES = st.sampled_from(["billing-en", "sales-en", "tickets"])
PEOPLE = st.sampled_from(["sofia", "sam", "max", "mira", "hugo"])
ESCALATION_STEP = st.one_of(
    # ordinary inputs (refused when, say, their contact is unknown or forgotten by then)
    st.tuples(
        st.just("arrive"),
        ESC_CONTACTS,
        QUEUES,
        st.sampled_from(["", "cust-1"]),
        st.booleans(),
    ),
    st.tuples(
        st.just("pause"),
        ESC_CONTACTS,
        st.booleans(),
        st.sampled_from(list(PauseReason)),
        st.sampled_from([0.0, 60.0, 600.0]),
    ),
    st.tuples(st.just("resume"), ESC_CONTACTS),
    st.tuples(st.just("transfer"), ESC_CONTACTS, QUEUES),
    st.tuples(st.just("end"), ESC_CONTACTS, st.sampled_from(list(Disposition))),
    st.tuples(st.just("reopened"), ESC_CONTACTS),
    st.tuples(st.just("abandoned"), ESC_CONTACTS),
    st.tuples(st.just("survey"), ESC_CONTACTS, st.integers(1, 5)),
    st.tuples(st.just("manager"), ESC_CONTACTS),
    st.tuples(st.just("routed"), ESC_CONTACTS, QUEUES, st.booleans()),
    st.tuples(st.just("unroutable"), ESC_CONTACTS, QUEUES),
    st.tuples(st.just("closed"), ESC_CONTACTS, QUEUES, st.booleans()),
    st.tuples(
        st.just("command"),
        st.sampled_from(["acknowledge", "note", "resolve"]),
        st.integers(0, 10),
        PEOPLE,
        st.sampled_from(["ok", " "]),
    ),
    # time passes without a tick (so inputs meet deadlines already due), or with one;
    # often exactly to a deadline (SLA 300 s, forget 300 or 900 s, retention 300 s)
    st.tuples(st.just("wait"), st.sampled_from([1.0, 300.0, 600.0, 900.0]) | st.floats(1, 2_000)),
    st.tuples(st.just("tick")),
    # the race: time runs past a deadline, then (no tick between) an event needing the case
    st.tuples(
        st.just("late"),
        st.sampled_from([300.0, 600.0, 900.0, 1_200.0]),
        st.sampled_from(["reopened", "manager", "survey", "unresolved", "transfer"]),
        ESC_CONTACTS,
    ),
    # inputs the escalation core must refuse
    st.tuples(st.just("no contact id")),
    st.tuples(st.just("unknown queue"), ESC_CONTACTS, st.booleans()),
    st.tuples(
        st.just("bad duration"),
        ESC_CONTACTS,
        st.booleans(),
        st.sampled_from([-1.0, math.inf, math.nan]),
    ),
    st.tuples(st.just("bad score"), ESC_CONTACTS, st.sampled_from([0, 6, -2])),
    st.tuples(st.just("ghost"), st.sampled_from(["survey", "reopened", "manager", "unresolved"])),
    st.tuples(st.just("foreign command"), st.sampled_from(["acknowledge", "note", "resolve"])),
)

EscalationRun = Callable[[EscalationCore, float], list[EscalationChange]]


def event(e: EscalationInput) -> EscalationRun:
    return lambda core, now: core.apply(e, now)


def command(name: str, esc_id: str, by: str, text: str) -> EscalationRun:
    def run(core: EscalationCore, now: float) -> list[EscalationChange]:
        if name == "acknowledge":
            return list(core.acknowledge(esc_id, by, now).changes)
        if name == "note":
            return list(core.add_note(esc_id, by, text, now).changes)
        return list(core.resolve(esc_id, by, text, now).changes)

    return run


def escalation_input(step: tuple[Any, ...], core: EscalationCore) -> tuple[EscalationRun, bool]:
    """What ``step`` does to a core, and whether it must be refused."""
    match step:
        case ("arrive", contact, queue, customer_id, reopened):
            customer = EscCustomer(customer_id=customer_id, name="Anna")
            return event(Arrived(contact, queue, customer, reopened=reopened)), False
        case ("pause", contact, hold, reason, seconds):
            kind = ContactHeld if hold else ContactPaused
            return event(kind(contact, reason, seconds)), False
        case ("resume", contact):
            return event(ContactResumed(contact)), False
        case ("transfer", contact, queue):
            return event(ContactTransferred(contact, queue)), False
        case ("end", contact, disposition):
            return event(ContactEnded(contact, disposition)), False
        case ("reopened", contact):
            return event(ContactReopened(contact)), False
        case ("abandoned", contact):
            return event(ContactAbandoned(contact)), False
        case ("survey", contact, score):
            return event(SurveyResult(contact, score)), False
        case ("late", _, "reopened", contact):
            return event(ContactReopened(contact)), False
        case ("late", _, "manager", contact):
            return event(ManagerRequested(contact)), False
        case ("late", _, "survey", contact):
            return event(SurveyResult(contact, 1)), False
        case ("late", _, "unresolved", contact):
            return event(ContactEnded(contact, Disposition.UNRESOLVED)), False
        case ("late", _, "transfer", contact):
            return event(ContactTransferred(contact, "marketing")), False
        case ("manager", contact):
            return event(ManagerRequested(contact)), False
        case ("routed", contact, queue, assigned):
            kind = ContactAssigned if assigned else ContactRequeued
            return event(kind(contact, queue)), False
        case ("unroutable", contact, queue):
            return event(ContactUnroutable(contact, queue)), False
        case ("closed", contact, queue, abandoned):
            return event(ContactClosed(contact, queue, abandoned)), False
        case ("command", name, pick, by, text):
            ids = sorted(e.escalation_id for e in core.escalations()) or ["eu/ghost/reopened"]
            return command(name, ids[pick % len(ids)], by, text), False
        case ("no contact id",):
            return event(ContactAbandoned("")), True
        case ("unknown queue", contact, unroutable):
            if unroutable:
                # refused for a new case, but accepted for a held one: a policy change may
                # have removed its queue, and the router reports it unroutable there
                return event(ContactUnroutable(contact, "marketing")), False
            return event(Arrived(contact, "marketing")), True
        case ("bad duration", contact, hold, seconds):
            kind = ContactHeld if hold else ContactPaused
            return event(kind(contact, PauseReason.TECHNICAL_ISSUE, seconds)), True
        case ("bad score", contact, score):
            return event(SurveyResult(contact, score)), True
        case ("ghost", kind):
            ghost = {
                "survey": SurveyResult("ghost", 1),
                "reopened": ContactReopened("ghost"),
                "manager": ManagerRequested("ghost"),
                "unresolved": ContactEnded("ghost", Disposition.UNRESOLVED),
            }[kind]
            return event(ghost), True
        case ("foreign command", name):
            ids = sorted(e.escalation_id for e in core.escalations()) or ["eu/ghost/reopened"]
            return command(name, ids[0], "nobody", "ok"), True
    raise AssertionError(step)


ARRIVE_C1 = ("arrive", "c1", "billing-en", "", False)  # its SLA deadline: 300 s later


@settings(max_examples=EXAMPLES, deadline=None)
# the races random steps reach only now and then: an event for a case whose drop deadline
# is already due, before any tick. Closed, past its retention: forgotten, so refused.
@example(
    900.0,
    300.0,
    [ARRIVE_C1, ("closed", "c1", "billing-en", False), ("late", 300.0, "reopened", "c1")],
)
# Idle past forget_idle_s, but its SLA deadline fires first and escalates: still held.
@example(900.0, 300.0, [ARRIVE_C1, ("late", 900.0, "reopened", "c1")])
# The same at one instant: the SLA deadline was scheduled first, so it fires first.
@example(300.0, 0.0, [ARRIVE_C1, ("late", 300.0, "manager", "c1")])
# Assigned (SLA stopped), on hold past its promise: the pause deadline escalates first.
@example(
    900.0,
    300.0,
    [
        ARRIVE_C1,
        ("routed", "c1", "billing-en", True),
        ("pause", "c1", True, PauseReason.CHECKING_INFORMATION, 60.0),
        ("late", 900.0, "survey", "c1"),
    ],
)
@given(
    st.sampled_from([300.0, 900.0]),  # forget_idle_s: 300 ties the drop with the SLA deadline
    st.sampled_from([0.0, 300.0]),  # retain_closed_s
    st.lists(ESCALATION_STEP, max_size=40),
)
def test_the_escalation_core_refuses_before_any_deadline_fires_and_decides_as_if_ticked_first(
    forget_idle_s: float, retain_closed_s: float, steps: list[tuple[Any, ...]]
) -> None:
    """A refused event or command fires no due deadline and changes nothing (the deadlines
    fire on the next call instead); a twin that never saw it decides the same; and a core
    ticked before every input refuses exactly the same inputs and publishes the same."""
    policy = make_policy(retain_closed_s=retain_closed_s, forget_idle_s=forget_idle_s)
    core, twin, ticked = (EscalationCore(policy, "eu") for _ in range(3))
    published: list[EscalationChange] = []
    published_ticked: list[EscalationChange] = []
    now = T0
    for step in steps:
        if step[0] == "wait":
            now += step[1]
            continue
        if step[0] == "late":
            now += step[1]
        if step[0] == "tick":
            changes = core.tick(now)
            assert twin.tick(now) == changes
            published += changes
            published_ticked += ticked.tick(now)
            continue
        run, must_refuse = escalation_input(step, core)
        changes, refused = attempt(
            core, lambda run=run, t=now: run(core, t), (RejectedInput, CommandError)
        )
        assert refused is not None or not must_refuse, f"{step} was not refused"
        published_ticked += ticked.tick(now)
        refused_ticked: Exception | None = None
        try:
            published_ticked += run(ticked, now)
        except (RejectedInput, CommandError) as exc:
            refused_ticked = exc
        assert type(refused_ticked) is type(refused), (
            f"{step}: {refused!r}, ticked first: {refused_ticked!r}"
        )
        if changes is not None:
            assert run(twin, now) == changes
            published += changes
    final = core.tick(now)
    assert twin.tick(now) == final
    published += final
    published_ticked += ticked.tick(now)
    assert published == published_ticked
    assert core.snapshot() == twin.snapshot() == ticked.snapshot()
    held = [sorted(c.escalations(), key=lambda e: e.escalation_id) for c in (core, twin, ticked)]
    assert held[0] == held[1] == held[2]


# --- notifier ----------------------------------------------------------------------------

N_CONTACTS = st.sampled_from(["c1", "c2", "c3"])
NOTIFIER_STEP = st.one_of(
    st.tuples(
        st.just("arrive"),
        N_CONTACTS,
        st.sampled_from([VOICE, CHAT, EMAIL, SMS]),
        st.sampled_from(["en", "pl", "ru"]),
    ),
    st.tuples(
        st.just("pause"),
        N_CONTACTS,
        st.floats(0, 3_600),
        st.booleans(),
    ),
    st.tuples(st.just("resume"), N_CONTACTS),
    st.tuples(st.just("position"), N_CONTACTS, st.integers(1, 9), st.floats(0, 900)),
    st.tuples(st.just("assigned"), N_CONTACTS),
    st.tuples(st.just("unroutable"), N_CONTACTS),
    st.tuples(st.just("end"), N_CONTACTS),
    st.tuples(st.just("gone"), N_CONTACTS, st.booleans()),
    st.tuples(st.just("direct"), N_CONTACTS),
    st.tuples(st.just("settle")),
    st.tuples(st.just("wait"), st.floats(1, 400)),
    # inputs the notifier must refuse: no message can say how long
    st.tuples(
        st.just("bad duration"),
        N_CONTACTS,
        st.sampled_from([math.inf, -math.inf, math.nan]),
        st.booleans(),
    ),
)


def notifier_input(step: tuple[Any, ...], index: int) -> tuple[n.Input, bool]:
    """The input for ``step`` and whether the notifier must refuse it."""
    contact = step[1]
    match step:
        case ("arrive", _, channel, language):
            return n.ContactArrived(
                contact, channel, n.Customer("k", "Anna", language=language)
            ), False
        case ("pause", _, seconds, hold):
            return n.ContactPaused(contact, "technical_issue", seconds, hold), False
        case ("resume", _):
            return n.ContactResumed(contact), False
        case ("position", _, position, wait_s):
            return n.QueuePositionUpdated(contact, position, wait_s), False
        case ("assigned", _):
            return n.ContactAssigned(contact), False
        case ("unroutable", _):
            return n.ContactUnroutable(contact), False
        case ("end", _):
            return n.ContactEnded(contact, "resolved"), False
        case ("gone", _, abandoned):
            return (n.ContactAbandoned if abandoned else n.ContactClosed)(contact), False
        case ("direct", _):
            return n.DirectRequest(f"r{index}", contact, SMS, n.Customer(), "hello"), False
        case ("bad duration", _, seconds, paused):
            if paused:
                return n.ContactPaused(contact, "technical_issue", seconds, hold=True), True
            return n.QueuePositionUpdated(contact, 3, seconds), True
    raise AssertionError(step)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.lists(NOTIFIER_STEP, max_size=40))
def test_the_notifier_refuses_an_unwordable_event_before_changing_anything(
    steps: list[tuple[Any, ...]],
) -> None:
    """A non-finite duration is refused with InvalidInput before any pause or position is
    half-recorded, and a twin that never saw it decides (and delivers) the same."""
    core = NotifierCore(NotifierPolicy(), CATALOG)
    twin = NotifierCore(NotifierPolicy(), CATALOG)
    now = T0
    for index, step in enumerate(steps):
        if step[0] == "wait":
            now += step[1]
            assert core.tick(now) == twin.tick(now)
            continue
        if step[0] == "settle":
            due = core.due(now)
            assert [p.notification for p in due] == [p.notification for p in twin.due(now)]
            if due:
                nid = due[0].notification.notification_id
                assert core.settle(nid, now) == twin.settle(nid, now)
            continue
        note_input, must_refuse = notifier_input(step, index)
        cause = f"e{index}"
        decided, refused = attempt(
            core, lambda e=note_input, c=cause, t=now: core.apply(e, c, t), NotifierError
        )
        assert (refused is not None) == must_refuse, f"{note_input}: refused {refused!r}"
        if decided is not None:
            assert twin.apply(note_input, cause, now) == decided
    assert core.tick(now) == twin.tick(now)
    assert core.snapshot() == twin.snapshot()
