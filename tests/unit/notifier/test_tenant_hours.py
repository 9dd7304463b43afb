"""Each tenant's notification policy (issue #16): its business hours decide the
outside-hours notice (when work resumes, in the customer's language and the tenant's
time zone), what the policy holds back is recorded SUPPRESSED, and a new version is
applied live and kept with the domain's state. Pure, with fixed clocks."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from prometheus_client import CollectorRegistry
from switchboard.v1 import notification_pb2
from switchboard.v1.envelope_pb2 import Envelope

from services.common.business_hours import parse_calendar
from services.common.clock import FakeClock
from services.common.codec import decode_envelope, new_envelope
from services.common.config import KafkaSettings
from services.common.errors import RejectedEvent
from services.common.kafka import InboundRecord
from services.common.topics import Topics
from services.notifier.adapters.kafka import NotifierHandler
from services.notifier.domain.core import (
    ContactArrived,
    ContactPaused,
    Customer,
    NotifierCore,
    NotifierPolicy,
    QueuePositionUpdated,
    policy_in_document,
    stored_policy,
)
from services.notifier.domain.errors import PolicyError
from services.notifier.domain.templates import opening_phrase
from services.notifier.metrics import NotifierMetrics
from tests.unit.notifier.test_notifier_core import CATALOG, SMS

WARSAW = ZoneInfo("Europe/Warsaw")
#: The Polish tenant: Monday to Friday 08:00-18:00 in Warsaw, closed over Christmas.
WROCLAW_HOURS = {
    "timezone": "Europe/Warsaw",
    "holidays": ["2026-12-24", "2026-12-25", "2026-12-26", "2027-01-01", "2027-01-06"],
    "hours": dict.fromkeys(("mon", "tue", "wed", "thu", "fri"), "08:00-18:00"),
}
WROCLAW = NotifierPolicy.from_dict({"business_hours": WROCLAW_HOURS})
ACME = NotifierPolicy()  # the configured default: always open


def warsaw(month: int, day: int, hour: int, minute: int = 0, year: int = 2026) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=WARSAW).timestamp()


#: Christmas Eve 2026, a Thursday, 10:00 in Warsaw: a working hour, but a holiday.
CHRISTMAS_EVE = warsaw(12, 24, 10)


def arrive(core: NotifierCore, at: float, language: str = "pl", contact_id: str = "c1") -> Any:
    customer = Customer("cust-1", "Ola", "+48600123456", language=language)
    return core.apply(ContactArrived(contact_id, SMS, customer), f"arrive-{contact_id}", at)


def test_a_polish_tenant_closed_on_a_holiday_says_when_work_resumes_and_acme_says_nothing() -> None:
    wroclaw, acme = NotifierCore(WROCLAW, CATALOG), NotifierCore(ACME, CATALOG)
    [notice] = arrive(wroclaw, CHRISTMAS_EVE)
    assert notice.kind == "outside_hours"
    assert notice.notification_id == "arrive-c1:outside_hours"
    # 25 and 26 December are holidays too, the 27th a Sunday: Monday the 28th at eight
    assert "w poniedziałek 28 grudnia o 08:00 (CET)" in notice.body
    assert notice.body.startswith("Dzień dobry, Ola, teraz nie pracujemy.")
    assert arrive(acme, CHRISTMAS_EVE) == []


@pytest.mark.parametrize(
    ("language", "when"),
    [
        ("en", "on Wednesday 2 December at 08:00 (CET)"),
        ("ru", "в среду 2 декабря в 08:00 (CET)"),
        ("pl", "w środę 2 grudnia o 08:00 (CET)"),
    ],
)
def test_an_evening_contact_is_told_the_next_morning_in_their_language(
    language: str, when: str
) -> None:
    """Tuesday 1 December 2026, 18:30 in Warsaw: the tenant's time, the customer's words."""
    [notice] = arrive(NotifierCore(WROCLAW, CATALOG), warsaw(12, 1, 18, 30), language)
    assert when in notice.body
    assert notice.language == language


def test_opening_hours_and_the_time_zone_name_follow_daylight_saving() -> None:
    summer = parse_calendar("x", WROCLAW_HOURS, "x")
    friday_evening = warsaw(7, 3, 19)
    opens = summer.next_open(friday_evening)
    assert opens == warsaw(7, 6, 8)
    assert opening_phrase(opens, WARSAW, "en") == "on Monday 6 July at 08:00 (CEST)"
    assert summer.next_open(warsaw(7, 6, 9)) == warsaw(7, 6, 9), "open: now"


def test_inside_business_hours_nothing_extra_is_said() -> None:
    assert arrive(NotifierCore(WROCLAW, CATALOG), warsaw(12, 1, 9)) == []


# --- what the policy holds back ----------------------------------------------------------


def test_a_place_in_line_outside_hours_is_recorded_suppressed_not_sent() -> None:
    core = NotifierCore(WROCLAW, CATALOG)
    arrive(core, CHRISTMAS_EVE)
    core.take_suppressed()
    told = core.apply(QueuePositionUpdated("c1", 3, 120), "p1", CHRISTMAS_EVE + 5)
    assert told == []
    [held] = core.take_suppressed()
    assert (held.notification.notification_id, held.notification.kind) == (
        "p1:queue_position",
        "queue_position",
    )
    assert core.outcome("p1:queue_position") == "suppressed"
    assert core.due(CHRISTMAS_EVE + 3600) == [core.pending("arrive-c1:outside_hours")]
    # the same event again (a redelivery) is not decided twice
    assert core.apply(QueuePositionUpdated("c1", 3, 120), "p1", CHRISTMAS_EVE + 6) == []
    assert core.take_suppressed() == []
    # a hold is not kept quiet: the customer on the line must hear it
    [hold] = core.apply(ContactPaused("c1", "technical_issue", 60, hold=True), "h1", CHRISTMAS_EVE)
    assert hold.kind == "hold_started"


def test_a_callback_offer_outside_hours_is_held_back_and_only_the_quiet_kinds_are() -> None:
    quiet_positions = NotifierPolicy.from_dict(
        {"business_hours": WROCLAW_HOURS, "quiet_outside_hours": ["callback_offer"]}
    )
    core = NotifierCore(quiet_positions, CATALOG)
    arrive(core, CHRISTMAS_EVE)
    assert core.apply(QueuePositionUpdated("c1", 9, 600), "p1", CHRISTMAS_EVE) == []
    [offer] = core.take_suppressed()
    assert offer.notification.kind == "callback_offer"
    [position] = core.apply(QueuePositionUpdated("c1", 8, 60), "p2", CHRISTMAS_EVE + 120)
    assert position.kind == "queue_position", "not kept quiet by this policy"


def test_positions_past_the_rate_limit_are_recorded_suppressed() -> None:
    core = NotifierCore(
        NotifierPolicy(position_min_interval_s=1, rate_limit_count=2, rate_limit_window_s=600),
        CATALOG,
    )
    arrive(core, CHRISTMAS_EVE)
    told = [
        core.apply(QueuePositionUpdated("c1", 10 - n, 60), f"p{n}", CHRISTMAS_EVE + 10 * n)
        for n in range(4)
    ]
    assert [len(t) for t in told] == [1, 1, 0, 0]
    assert [p.notification.notification_id for p in core.take_suppressed()] == [
        "p2:queue_position",
        "p3:queue_position",
    ]
    assert core.rate_limited == 2


# --- the policy's table ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "reason"),
    [
        ({"business_hours": {"hours": {"mon": "08:00-18:00"}}}, "business_hours.timezone: missing"),
        (
            {"business_hours": {**WROCLAW_HOURS, "timezone": "Europe/Wroclaw"}},
            "business_hours.timezone: unknown time zone 'Europe/Wroclaw'",
        ),
        (
            {"business_hours": {**WROCLAW_HOURS, "holidays": ["24.12.2026"]}},
            "business_hours.holidays: not a date (YYYY-MM-DD): '24.12.2026'",
        ),
        (
            {"business_hours": {**WROCLAW_HOURS, "hours": {"mon": "18:00-08:00"}}},
            "business_hours.hours.mon: expected 'HH:MM-HH:MM' in one day, got '18:00-08:00'",
        ),
        ({"quiet_outside_hours": "queue_position"}, "quiet_outside_hours: expected a list"),
        ({"quiet_outside_hours": ["closed"]}, "quiet_outside_hours: 'closed' cannot be kept quiet"),
    ],
)
def test_a_bad_table_is_refused_naming_the_field(table: dict[str, Any], reason: str) -> None:
    with pytest.raises(PolicyError) as refused:
        NotifierPolicy.from_dict(table)
    assert refused.value.reason.startswith(reason)


def test_a_document_gives_its_notification_table_or_the_default() -> None:
    default = NotifierPolicy()
    assert policy_in_document("[routing]\nx = 1\n", default) is default
    read = policy_in_document("[notification]\nrate_limit_count = 2\n", default)
    assert read.rate_limit_count == 2
    with pytest.raises(PolicyError, match=r"^notification\.rate_limit_count: must be > 0$"):
        policy_in_document("[notification]\nrate_limit_count = 0\n", default)


# --- a new version, live -----------------------------------------------------------------


def test_a_new_version_is_applied_from_now_and_kept_with_the_state() -> None:
    core = NotifierCore(ACME, CATALOG)
    assert arrive(core, CHRISTMAS_EVE) == []
    [hold] = core.apply(ContactPaused("c1", "technical_issue", 60, hold=True), "h1", CHRISTMAS_EVE)
    assert core.next_deadline() == CHRISTMAS_EVE + 60 + 30
    document = "[notification]\noverrun_grace_s = 5\n"
    core.change_policy(NotifierPolicy(overrun_grace_s=5), 3, CHRISTMAS_EVE + 10, document)
    assert core.next_deadline() == CHRISTMAS_EVE + 60 + 5, "the overrun timer re-armed"
    snapshot = core.snapshot()
    assert stored_policy(snapshot) == (3, document)
    restored = NotifierCore.restore(
        NotifierPolicy(overrun_grace_s=5), CATALOG, snapshot, version=3, document=document
    )
    assert (restored.policy_version, restored.next_deadline()) == (3, CHRISTMAS_EVE + 65)
    assert restored.pending(hold.notification_id) is not None
    # the new hours apply to the next arrival
    core.change_policy(WROCLAW, 4, CHRISTMAS_EVE + 20)
    [notice] = arrive(core, CHRISTMAS_EVE + 30, contact_id="c2")
    assert notice.kind == "outside_hours"


# --- the handler ---------------------------------------------------------------------------

TOPICS = Topics("t.")
WROCLAW_DOCUMENT = """
[notification]
quiet_outside_hours = ["queue_position", "callback_offer"]
[notification.business_hours]
timezone = "Europe/Warsaw"
holidays = ["2026-12-24", "2026-12-25", "2026-12-26"]
[notification.business_hours.hours]
mon = "08:00-18:00"
tue = "08:00-18:00"
wed = "08:00-18:00"
thu = "08:00-18:00"
fri = "08:00-18:00"
"""


def handler(clock: FakeClock) -> NotifierHandler:
    return NotifierHandler(
        policy=NotifierPolicy(),
        catalog=CATALOG,
        topics=TOPICS,
        kafka=KafkaSettings(),
        metrics=NotifierMetrics.create(CollectorRegistry()),
        clock=clock,
    )


def on(topic: str, envelope: Envelope) -> tuple[Envelope, InboundRecord]:
    return envelope, InboundRecord(topic, 0, 0, envelope.domain.encode(), b"", (), 0)


def policy(domain: str, version: int, document: str) -> tuple[Envelope, InboundRecord]:
    envelope = new_envelope(domain, "router", event_id=f"policy-{version}-{len(document)}")
    envelope.policy_changed.current.version = version
    envelope.policy_changed.current.document = document
    return on(TOPICS.name("policies"), envelope)


def arrival(domain: str, contact_id: str) -> tuple[Envelope, InboundRecord]:
    envelope = new_envelope(domain, "pbx", event_id=f"arrive-{contact_id}")
    e = envelope.contact_arrived
    e.contact_id, e.queue, e.channel = contact_id, "obsluga-pl", SMS
    e.customer.name, e.customer.language = "Ola", "pl"
    return on(TOPICS.contact_events, envelope)


def position(domain: str, contact_id: str) -> tuple[Envelope, InboundRecord]:
    envelope = new_envelope(domain, "router", event_id=f"position-{contact_id}")
    q = envelope.queue_position_updated
    q.contact_id, q.queue, q.position = contact_id, "obsluga-pl", 2
    q.estimated_wait.FromSeconds(60)
    return on(TOPICS.routing_decisions, envelope)


def test_the_handler_applies_each_domains_version_and_records_what_it_held_back() -> None:
    h = handler(FakeClock(CHRISTMAS_EVE))
    assert h.handle(*policy("wroclaw", 2, WROCLAW_DOCUMENT)) == []
    assert h.handle(*arrival("wroclaw", "w1")) == []  # the notice is pending delivery
    assert h.handle(*arrival("acme", "a1")) == []
    assert [p.notification.kind for _, c in h.states.items() for p in c.due(CHRISTMAS_EVE)] == [
        "outside_hours"
    ]
    [suppressed] = h.handle(*position("wroclaw", "w1"))
    record = decode_envelope(suppressed.value, suppressed.headers)
    assert record.policy_version == 2
    assert record.notification_record.outcome == notification_pb2.DELIVERY_OUTCOME_SUPPRESSED
    assert record.notification_record.notification.kind == (
        notification_pb2.NOTIFICATION_KIND_QUEUE_POSITION
    )
    assert record.notification_record.notification.body == ""
    assert h.handle(*position("acme", "a1")) == [], "acme's is sent, not held back"


def test_the_handler_refuses_stale_and_unreadable_versions_changing_nothing() -> None:
    h = handler(FakeClock(CHRISTMAS_EVE))
    h.handle(*policy("wroclaw", 2, WROCLAW_DOCUMENT))
    with pytest.raises(RejectedEvent) as stale:
        h.handle(*policy("wroclaw", 1, "[notification]\n"))
    assert stale.value.reason == (
        "policy version 1 of domain 'wroclaw' is stale: version 2 is already applied"
    )
    with pytest.raises(RejectedEvent) as unreadable:
        h.handle(*policy("wroclaw", 3, WROCLAW_DOCUMENT.replace("Europe/Warsaw", "Mars/Base")))
    assert unreadable.value.reason == (
        "policy version 3 of domain 'wroclaw': notification.business_hours.timezone: "
        "unknown time zone 'Mars/Base'"
    )
    assert h.states.cores["wroclaw"].policy_version == 2
