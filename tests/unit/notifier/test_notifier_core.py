"""What customers are told, in which words, and how often (pure core, fake time)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from services.notifier.adapters.gateway import GrpcChannelGateway
from services.notifier.adapters.templates import load_catalog
from services.notifier.domain.channels import CHANNELS, ChannelInfo, channel_info
from services.notifier.domain.core import (
    ContactArrived,
    ContactClosed,
    ContactEnded,
    ContactPaused,
    ContactResumed,
    ContactUnroutable,
    Customer,
    CustomerErased,
    NotifierCore,
    NotifierPolicy,
    QueuePositionUpdated,
)
from services.notifier.domain.delivery import (
    CircuitBreaker,
    CircuitState,
    RetryPolicy,
    is_retryable,
)
from services.notifier.domain.errors import InvalidInput, PolicyError
from services.notifier.domain.templates import TemplateCatalog, TemplateError, duration_phrase
from services.notifier.settings import GatewaySettings

TEMPLATES = Path(__file__).resolve().parents[3] / "services" / "notifier" / "templates"
CATALOG = load_catalog(TEMPLATES)
T0 = 1_700_000_000.0
VOICE, CHAT, EMAIL, SMS, SOCIAL = 1, 2, 3, 4, 5


def core_with(
    contact_id: str = "c1",
    *,
    language: str = "en",
    channel: int = SMS,
    name: str = "Anna",
    **policy: float,
) -> NotifierCore:
    core = NotifierCore(NotifierPolicy(**policy), CATALOG)  # type: ignore[arg-type]
    core.apply(
        ContactArrived(contact_id, channel, Customer("cust-1", name, language=language)), "e0", T0
    )
    return core


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en", ["Hello Anna", "checking some information", "5 minutes"]),
        ("ru", ["Здравствуйте, Anna", "уточняет информацию", "5 минут"]),
        ("pl", ["Dzień dobry, Anna", "sprawdza informacje", "5 minut"]),
    ],
)
def test_a_hold_tells_why_and_how_long_in_the_customers_language(
    language: str, expected: list[str]
) -> None:
    core = core_with(language=language)
    [note] = core.apply(ContactPaused("c1", "checking_information", 300, hold=True), "e1", T0)
    assert note.kind == "hold_started"
    for fragment in expected:
        assert fragment in note.body


@pytest.mark.parametrize(("channel", "style_hint"), [(SMS, 160), (EMAIL, None), (VOICE, 160)])
def test_channel_styles_sms_short_email_with_subject(channel: int, style_hint: int | None) -> None:
    core = core_with(channel=channel)
    [note] = core.apply(ContactPaused("c1", "technical_issue", 600, hold=False), "e1", T0)
    if channel == EMAIL:
        assert note.subject == "Your request is paused"
        assert "\n\n" in note.body
    else:
        assert note.subject == ""
        assert len(note.body) <= (style_hint or 10_000)


def test_unknown_customer_name_gets_a_graceful_greeting_and_unknown_language_falls_back() -> None:
    core = core_with(name="", language="de")
    [note] = core.apply(ContactPaused("c1", "awaiting_customer", 120, hold=False), "e1", T0)
    assert note.body.startswith("Hello,")
    assert note.language == "de"


@pytest.mark.parametrize(
    ("minutes", "ru", "pl"),
    [
        (1, "1 минута", "1 minuta"),
        (2, "2 минуты", "2 minuty"),
        (5, "5 минут", "5 minut"),
        (12, "12 минут", "12 minut"),
        (21, "21 минута", "21 minut"),
        (22, "22 минуты", "22 minuty"),
    ],
)
def test_plural_forms_follow_the_language(minutes: int, ru: str, pl: str) -> None:
    assert duration_phrase(minutes * 60, "ru") == ru
    assert duration_phrase(minutes * 60, "pl") == pl


def test_a_pause_past_its_promise_gets_one_follow_up_and_resume_gets_a_short_note() -> None:
    core = core_with(overrun_grace_s=30)
    core.apply(ContactPaused("c1", "waiting_for_specialist", 120, hold=True), "e1", T0)
    assert core.tick(T0 + 149) == []
    [late] = core.tick(T0 + 150)
    assert late.kind == "pause_overrun"
    assert core.tick(T0 + 500) == []
    [resumed] = core.apply(ContactResumed("c1"), "e2", T0 + 600)
    assert resumed.kind == "resumed"


def test_a_burst_of_position_updates_yields_one_message_with_the_latest_position() -> None:
    core = core_with(position_min_interval_s=60)
    [first] = core.apply(QueuePositionUpdated("c1", 5, 240), "p1", T0)
    assert "number 5" in first.body
    for n, position in enumerate((4, 3, 2), start=2):
        assert (
            core.apply(QueuePositionUpdated("c1", position, 60 * position), f"p{n}", T0 + n) == []
        )
    assert core.coalesced == 2
    [latest] = core.tick(T0 + 60)
    assert "number 2" in latest.body


def test_a_long_wait_offers_a_callback_once() -> None:
    core = core_with(callback_offer_after_s=300)
    [offer] = core.apply(QueuePositionUpdated("c1", 9, 600), "p1", T0)
    assert offer.kind == "callback_offer"
    [update] = core.apply(QueuePositionUpdated("c1", 8, 550), "p2", T0 + 100)
    assert update.kind == "queue_position"


@pytest.mark.parametrize(
    ("language", "channel", "expected"),
    [
        ("en", SMS, "We cannot estimate the wait yet"),
        ("en", VOICE, "We cannot estimate the wait yet"),
        ("ru", CHAT, "время ожидания пока не оценить"),
        ("pl", EMAIL, "Nie możemy jeszcze oszacować czasu oczekiwania"),
    ],
)
def test_a_place_in_line_without_an_estimate_names_no_wait(
    language: str, channel: int, expected: str
) -> None:
    """The router has no estimate when nobody logged in could take the contact; the
    customer used to read "Estimated wait: less than a minute" (a 30 s guess, or 0)."""
    core = core_with(language=language, channel=channel)
    [note] = core.apply(QueuePositionUpdated("c1", 3, None), "p1", T0)
    assert note.kind == "queue_position"
    assert expected in note.body
    assert "3" in note.body
    for phrase in ("less than a minute", "меньше минуты", "mniej niż minuta", "minute"):
        assert phrase not in note.body


def test_no_estimate_offers_no_callback_and_a_held_back_one_stays_without_a_wait() -> None:
    core = core_with(callback_offer_after_s=300, position_min_interval_s=60)
    [first] = core.apply(QueuePositionUpdated("c1", 5, None), "p1", T0)
    assert first.kind == "queue_position"  # not a callback offer "the wait is about ..."
    assert core.apply(QueuePositionUpdated("c1", 4, None), "p2", T0 + 10) == []  # held back
    restored = NotifierCore.restore(
        core.policy, CATALOG, {k: v for k, v in core.take_changes().items() if v}
    )
    [later] = restored.tick(T0 + 60)
    assert "number 4" in later.body
    assert "cannot estimate" in later.body
    assert "less than a minute" not in later.body


def test_the_rate_limit_protects_the_customer_from_floods() -> None:
    core = core_with(position_min_interval_s=1, rate_limit_count=3, rate_limit_window_s=600)
    sent = [
        core.apply(QueuePositionUpdated("c1", 10 - n, 60), f"p{n}", T0 + 10 * n) for n in range(6)
    ]
    assert sum(len(s) for s in sent) == 3
    assert core.rate_limited == 3


def test_closing_says_why_and_no_agent_available_is_said_once() -> None:
    core = core_with(language="pl")
    [told] = core.apply(ContactUnroutable("c1"), "u1", T0)
    assert told.kind == "no_agent_available"
    assert core.apply(ContactUnroutable("c1"), "u2", T0 + 1) == []
    [closed] = core.apply(ContactEnded("c1", "resolved"), "end", T0 + 2)
    assert "problem został rozwiązany" in closed.body


def test_the_same_cause_never_yields_a_second_notification_even_after_restore() -> None:
    core = core_with()
    [note] = core.apply(ContactPaused("c1", "technical_issue", 60, hold=True), "e1", T0)
    core.settle(note.notification_id, T0 + 1)
    restored = NotifierCore.restore(
        core.policy, CATALOG, {k: v for k, v in core.take_changes().items() if v}
    )
    assert restored.is_settled(note.notification_id)
    assert restored.apply(ContactPaused("c1", "technical_issue", 60, hold=True), "e1", T0) == []


def test_settled_ids_are_forgotten_oldest_first_after_the_ledger_window() -> None:
    core = core_with(ledger_s=100)
    notes = []
    for n, cause in enumerate(["e1", "e2", "e3"]):
        [note] = core.apply(ContactPaused("c1", "technical_issue", 60, hold=True), cause, T0)
        core.settle(note.notification_id, T0 + 10 * n)
        notes.append(note.notification_id)
    core.take_changes()
    core.tick(T0 + 115)  # past the window for the first two (settled at +0, +10), not +20
    assert [core.is_settled(n) for n in notes] == [False, False, True]
    forgotten = {k: v for k, v in core.take_changes().items() if k.startswith("sent:")}
    assert forgotten == {f"sent:{notes[0]}": None, f"sent:{notes[1]}": None}


def test_pending_deliveries_survive_a_restore() -> None:
    core = core_with()
    [note] = core.apply(ContactPaused("c1", "technical_issue", 60, hold=True), "e1", T0)
    attempt = core.delivery_failed(
        note.notification_id, "UNAVAILABLE", "UNAVAILABLE", T0, random.Random(1)
    )
    assert attempt is not None
    retry_at = attempt.step.retry_at
    restored = NotifierCore.restore(
        core.policy, CATALOG, {k: v for k, v in core.take_changes().items() if v}
    )
    assert restored.due(retry_at - 0.001) == []
    [pending] = restored.due(retry_at)
    assert pending.notification == note
    assert pending.attempts == 1


def test_events_for_unknown_or_closed_contacts_are_ignored() -> None:
    core = core_with()
    core.apply(ContactClosed("c1"), "x", T0)
    assert core.apply(ContactPaused("c1", "technical_issue", 60, hold=True), "e1", T0) == []


def test_backoff_grows_with_full_jitter_within_the_cap() -> None:
    policy = RetryPolicy(base_s=0.5, cap_s=4.0)
    rng = random.Random(7)
    for attempt in range(1, 8):
        delay = policy.backoff(attempt, rng)
        assert 0 <= delay <= min(4.0, 0.5 * 2 ** (attempt - 1))
    assert policy.gives_up(6, T0, T0 + 1)
    assert policy.gives_up(1, T0, T0 + 121)
    assert not policy.gives_up(2, T0, T0 + 1)


def test_only_transient_grpc_errors_are_retried() -> None:
    assert is_retryable("UNAVAILABLE")
    assert is_retryable("DEADLINE_EXCEEDED")
    assert not is_retryable("INVALID_ARGUMENT")
    assert not is_retryable("FAILED_PRECONDITION")


def test_circuit_breaker_opens_after_failures_then_lets_one_trial_through() -> None:
    breaker = CircuitBreaker(failure_threshold=2, open_s=10)
    breaker.failed(T0)
    assert breaker.allows(T0)
    breaker.failed(T0)
    assert breaker.state == CircuitState.OPEN
    assert not breaker.allows(T0 + 5)
    assert breaker.allows(T0 + 10)
    assert not breaker.allows(T0 + 10)  # one trial at a time
    breaker.succeeded()
    assert breaker.state == CircuitState.CLOSED


def test_a_template_with_an_unknown_placeholder_fails_at_load_naming_it(tmp_path: Path) -> None:
    text = (TEMPLATES / "en.toml").read_text(encoding="utf-8")
    (tmp_path / "en.toml").write_text(
        text.replace("About {duration}", "About {durration}"), encoding="utf-8"
    )
    with pytest.raises(
        TemplateError,
        match=r"en\.toml: \[hold_started\] sms uses unknown placeholder \{durration\}",
    ):
        load_catalog(tmp_path)


def test_policy_errors_name_the_field() -> None:
    with pytest.raises(PolicyError, match="position_min_interval_s"):
        NotifierPolicy.from_dict({"position_min_interval_s": -1})
    with pytest.raises(PolicyError, match="bogus"):
        NotifierPolicy.from_dict({"bogus": 1})


def test_many_coalesced_position_updates_leave_one_pending_timer() -> None:
    core = core_with(position_min_interval_s=60)
    core.apply(QueuePositionUpdated("c1", 50, 240), "p0", T0)
    for n in range(1, 200):
        core.apply(QueuePositionUpdated("c1", 10 + n % 30, 240), f"p{n}", T0 + n * 0.1)
    assert core.coalesced == 198
    assert core.scheduled_timers == 1
    assert core.next_deadline() == T0 + 60
    [latest] = core.tick(T0 + 60)
    assert latest.kind == "queue_position"
    assert core.scheduled_timers == 0
    assert core.next_deadline() is None


def test_a_closed_contact_leaves_no_timer_behind() -> None:
    core = core_with(position_min_interval_s=60)
    core.apply(ContactPaused("c1", "technical_issue", 60, hold=True), "e1", T0)
    core.apply(QueuePositionUpdated("c1", 5, 240), "p1", T0)
    core.apply(QueuePositionUpdated("c1", 4, 240), "p2", T0 + 1)
    assert core.scheduled_timers == 2
    core.apply(ContactClosed("c1"), "x", T0 + 2)
    assert core.scheduled_timers == 0


def test_one_channel_table_social_is_worded_like_chat_but_has_its_own_gateway() -> None:
    assert channel_info(SOCIAL) == ChannelInfo(name="social", style="chat")
    assert channel_info(99) == ChannelInfo(name="sms", style="sms")
    assert {number: info.name for number, info in CHANNELS.items()} == {
        VOICE: "voice",
        CHAT: "chat",
        EMAIL: "email",
        SMS: "sms",
        SOCIAL: "social",
    }
    bodies = {}
    for channel in (CHAT, SOCIAL):
        core = core_with(channel=channel)
        [note] = core.apply(ContactPaused("c1", "technical_issue", 600, hold=False), "e1", T0)
        bodies[channel] = note.body
    assert bodies[SOCIAL] == bodies[CHAT]
    gateways = GrpcChannelGateway(GatewaySettings(default="d:1", social="s:1", chat="c:1"))
    assert gateways.endpoint(SOCIAL) == "s:1"
    assert gateways.endpoint(CHAT) == "c:1"
    assert gateways.endpoint(99) == "d:1"


def test_the_catalog_needs_the_fallback_language_and_the_loader_names_the_file(
    tmp_path: Path,
) -> None:
    with pytest.raises(TemplateError, match="'en', the fallback language"):
        TemplateCatalog({"ru": CATALOG.languages["ru"]})
    with pytest.raises(TemplateError, match="no template files"):
        load_catalog(tmp_path)
    (tmp_path / "ru.toml").write_text("[greeting]\n", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"ru\.toml: \[greeting\] named is missing"):
        load_catalog(tmp_path)


def test_an_erasure_removes_the_customer_and_rejects_what_was_not_yet_delivered() -> None:
    core = core_with(name="Zofia", language="pl")
    [note] = core.apply(ContactPaused("c1", "checking_information", 300, hold=True), "e1", T0)
    assert core.pending(note.notification_id) is not None
    assert core.apply(CustomerErased("cust-1"), "erase-1", T0 + 1) == []
    [rejected] = core.take_erased()
    assert rejected.notification.notification_id == note.notification_id
    assert core.outcome(note.notification_id) == "rejected"
    assert core.take_erased() == []
    snapshot = str(core.snapshot())
    assert "Zofia" not in snapshot
    assert "cust-1" not in snapshot
    with pytest.raises(InvalidInput, match="customer_id: empty"):
        core.apply(CustomerErased(""), "erase-2", T0 + 2)


def test_a_closed_contact_and_its_customer_are_deleted_from_the_changelog() -> None:
    """docs/data-map.md: the notifier keeps a customer's details only while the contact is on."""
    core = core_with()
    assert core.take_changes()["contact:c1"] is not None
    core.apply(ContactClosed("c1"), "close", T0 + 5)
    assert core.take_changes()["contact:c1"] is None
