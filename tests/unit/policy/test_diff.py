"""``switchboard policy diff``: what changes, in words, compared as the services read it."""

from __future__ import annotations

from pathlib import Path

from services.policy.diff import diff_policies
from services.policy.validation import ParsedPolicy, parse_document

ROOT = Path(__file__).resolve().parents[3]
ACME = (ROOT / "deploy" / "policies" / "acme.toml").read_text()
NONE = ParsedPolicy()


def diff(old: str, new: str, default: ParsedPolicy = NONE) -> list[str]:
    return diff_policies(parse_document(old), parse_document(new), default)


def changed(old: str, new: str) -> list[str]:
    """The change lines, without the tables' headings."""
    return [line.strip() for line in diff(old, new) if line.startswith("  ")]


def edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def test_the_same_document_changes_nothing() -> None:
    assert diff(ACME, ACME) == ["no changes"]


def test_a_default_written_out_is_no_change() -> None:
    explicit = edit(
        ACME, 'strategy = "round_robin"\n', 'strategy = "round_robin"\nservice_level_target = 0.8\n'
    )
    assert diff(ACME, explicit) == ["no changes"]


def test_queues_added_removed_and_renamed() -> None:
    added = ACME + '\n[routing.queues.tech-pl]\nskills = { tech = 4 }\nlanguage = "pl"\n'
    assert changed(ACME, added) == [
        "queue added: tech-pl (needs tech >= 4, language pl, longest_idle, 80% within 20s, "
        "offer timeout 15s)"
    ]
    assert changed(added, ACME) == ["queue removed: tech-pl"]
    renamed = edit(ACME, "[routing.queues.tech-ru]", "[routing.queues.tech-russian]")
    assert changed(ACME, renamed) == ["queue renamed? tech-ru -> tech-russian (same settings)"]


def test_skills_and_thresholds_per_queue() -> None:
    new = edit(
        ACME,
        'skills = { tech = 4 }\nlanguage = "en"',
        'skills = { tech = 5, english = 2 }\nlanguage = "en"',
    )
    new = edit(new, "skills = { sales = 2 }", "skills = {}")
    assert changed(ACME, new) == [
        "tech-en: skill english added (>= 2)",
        "tech-en: skill tech threshold 4 -> 5",
        "sales-pl: skill sales no longer needed (was >= 2)",
    ]


def test_strategy_service_level_timeouts() -> None:
    new = edit(
        ACME,
        'strategy = "most_proficient"\nservice_level_s = 30\noffer_timeout_s = 8',
        'strategy = "round_robin"\nservice_level_s = 25\nservice_level_target = 0.9\noffer_timeout_s = 12',
    )
    assert changed(ACME, new) == [
        "tech-en: strategy most_proficient -> round_robin",
        "tech-en: service level target 80% within 30s -> 90% within 25s",
        "tech-en: offer timeout 8s -> 12s",
    ]


def test_steps_after_deltas_and_overflow() -> None:
    new = edit(
        ACME,
        "  { after_s = 30, min_proficiency_delta = 1 },\n"
        "  { after_s = 60, min_proficiency_delta = 1, release_preferred_agent = true },",
        "  { after_s = 45, min_proficiency_delta = 2 },\n"
        "  { after_s = 60, min_proficiency_delta = 1, release_preferred_agent = true },\n"
        '  { after_s = 120, overflow_queues = ["billing-ru"] },',
    )
    new = edit(new, 'steps = [{ after_s = 90, overflow_queues = ["billing-en"] }]', "")
    assert changed(ACME, new) == [
        "billing-en: step 1: after 30s -> 45s; proficiency relaxed by 1 -> 2",
        "billing-en: step 3 added: after 120s, overflow to billing-ru",
        "billing-pl: step 1 removed (was: after 90s, overflow to billing-en)",
    ]


def test_capacity_and_priorities() -> None:
    new = edit(ACME, "chat = 3", "chat = 2")
    new = edit(new, "max_total = 5", "max_total = 4")
    new = edit(new, "vip = 120", "vip = 60")
    new = edit(new, "max_total = 4", 'max_total = 4\nfallback_queue = "billing-en"')
    assert changed(ACME, new) == [
        "capacity: chat 3 -> 2 contacts at once per agent",
        "capacity: 5 -> 4 contacts at once per agent across channels",
        "priority vip counts as waiting longer by 120s -> 60s",
        "contacts of a removed queue go to (none: they are parked and reported unroutable) "
        "-> billing-en",
    ]


def test_escalation_teams_people_deadlines_triggers() -> None:
    new = edit(ACME, 'supervisor = "olga"', 'supervisor = "oksana"')
    new = edit(new, "manager = 240", "manager = 180")
    new = edit(new, "wait_threshold_s = 60", "wait_threshold_s = 45")
    new = edit(
        new,
        '[escalation.queues.tech-ru]\nteam = "russian"',
        '[escalation.queues.tech-ru]\nteam = "tech-en"\ncalendar = "warsaw-office"\ntriggers = { wait_threshold_s = 30 }',
    )
    assert changed(ACME, new) == [
        "people added: oksana",
        "people removed: olga",
        "team russian: supervisor olga -> oksana",
        "deadline: manager acknowledges within 240s -> 180s",
        "triggers: wait_threshold_s 60 -> 45",
        "queue tech-ru: team russian -> tech-en; calendar always open -> warsaw-office; "
        "trigger wait_threshold_s (default) -> 30",
    ]


def test_calendars_hours_and_holidays() -> None:
    new = edit(ACME, 'fri = "08:00-17:00"', 'fri = "08:00-16:00"\nsat = "09:00-13:00"')
    new = edit(new, '"2026-12-26", "2027-01-01"', '"2026-12-26", "2026-11-11"')
    assert changed(ACME, new) == [
        "calendar warsaw-office: fri 08:00-17:00 -> 08:00-16:00; sat closed -> 09:00-13:00; "
        "holiday added 2026-11-11; holiday removed 2027-01-01"
    ]


def test_notification_thresholds() -> None:
    new = edit(ACME, "position_min_interval_s = 30", "position_min_interval_s = 45")
    new = edit(new, "rate_limit_count = 6", "rate_limit_count = 4")
    assert diff(ACME, new) == [
        "notification:",
        "  position_min_interval_s: 30 -> 45",
        "  rate_limit_count: 6 -> 4",
    ]


def test_a_table_left_out_is_compared_as_the_configured_default() -> None:
    default = parse_document(ACME)
    only_notification = ACME[ACME.rindex("[notification]") :].replace("= 30", "= 45")
    assert diff(ACME, only_notification, default) == [
        "routing:",
        "  [routing] left out: the configured default applies",
        "escalation:",
        "  [escalation] left out: the configured default applies",
        "notification:",
        "  position_min_interval_s: 30 -> 45",
    ]
    # a domain without versions (nothing) against a document: its tables vs the default
    assert diff_policies(NONE, parse_document(only_notification), default) == [
        "notification:",
        "  [notification] given (was the configured default)",
        "  position_min_interval_s: 30 -> 45",
    ]


def test_a_table_replaces_the_default_whole_fields_left_out_take_the_parser_s() -> None:
    partial = "[notification]\nposition_min_interval_s = 30\n"
    assert changed(ACME[ACME.rindex("[notification]") :], partial) == [
        "callback_offer_after_s: 120 -> 300",
        "overrun_grace_s: 10 -> 30",
    ]


def test_the_demo_tenants_differ_in_words() -> None:
    wroclaw = (ROOT / "deploy" / "policies" / "wroclaw.toml").read_text()
    lines = diff(ACME, wroclaw)
    assert (
        "  queue added: faktury (needs billing >= 3, language pl, longest_idle, 80% within 20s, offer timeout 10s, 1 step(s))"
        in lines
    )
    assert "  queue removed: tech-ru" in lines
    assert (
        "  team added: wroclaw-serwis (supervisor tomasz, manager marek, head of service ewa)"
        in lines
    )
    assert any(
        line.startswith("  calendar added: wroclaw-office (Europe/Warsaw: mon 08:00-16:00;")
        for line in lines
    )
    assert "  callback_offer_after_s: 120 -> 90" in lines


def test_the_notifiers_business_hours() -> None:
    wroclaw = (ROOT / "deploy" / "policies" / "wroclaw.toml").read_text()
    notification = wroclaw[wroclaw.rindex("[notification]") :]
    later = notification.replace('sat = "09:00-13:00"', "").replace(
        '"2027-01-01", "2027-01-06"', '"2027-01-01"'
    )
    assert changed(notification, later) == [
        "business hours: sat 09:00-13:00 -> closed; holiday removed 2027-01-06"
    ]
    opened = ACME[ACME.rindex("[notification]") :]
    lines = changed(opened, notification)
    assert lines[0].startswith(
        "business hours: always open -> Europe/Warsaw: mon 08:00-16:00; tue 08:00-16:00;"
    )
    assert "position_min_interval_s: 30 -> 45" in lines
