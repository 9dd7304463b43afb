"""The escalation policy: built from parsed TOML, refused at start with the field named."""

from __future__ import annotations

import textwrap
import tomllib
from typing import Any

import pytest

from services.escalation.domain import (
    TIER_CHAIN,
    UNASSIGNED_TEAM,
    EscalationPolicy,
    EscalationReason,
    PermissionDenied,
    PolicyError,
    Priority,
    Severity,
    SlaClock,
    Tier,
)
from services.escalation.domain import (
    policy as policy_module,
)
from tests.unit.escalation.scenario import BASE, merged


def refused(overrides: dict[str, Any], *, drop: tuple[str, ...] = ()) -> str:
    data = merged(BASE, overrides)
    for path in drop:
        *parents, last = path.split(".")
        node = data
        for part in parents:
            node = node[part]
        del node[last]
    with pytest.raises(PolicyError) as caught:
        EscalationPolicy.from_dict(data)
    return caught.value.reason


def test_the_documented_toml_example_is_a_valid_policy() -> None:
    """The module docstring is the config reference, so it must parse as written."""
    doc = policy_module.__doc__ or ""
    example = textwrap.dedent(doc.split("Example::", 1)[1])
    policy = EscalationPolicy.from_dict(tomllib.loads(example)["escalation"], "escalation.")
    assert policy.teams["billing"].manager == "marek"
    assert policy.teams["billing"].head_of_service == "hugo"
    assert policy.triggers_for("eu-1", "billing-en").wait_threshold_s == 120
    assert policy.triggers_for("eu-2", "billing-en").wait_threshold_s == 120
    assert policy.triggers.wait_threshold_s == 300
    assert policy.domain_overrides["eu-1"] == {"wait_threshold_s": 240}
    assert policy.queues["billing-en"].calendar.name == "warsaw"
    assert policy.ack_deadlines_s[Tier.HEAD_OF_SERVICE] == 3600
    # "*" is every team, and the escalations restored without a home (team "unassigned")
    assert policy.teams_visible_to("ops-lead") == frozenset({"billing", UNASSIGNED_TEAM})


def test_a_team_without_a_supervisor_is_refused_naming_the_field() -> None:
    assert refused({}, drop=("teams.billing.supervisor",)) == "teams.billing.supervisor: missing"


def test_a_tier_without_a_person_is_refused_when_there_is_no_default() -> None:
    assert refused({}, drop=("manager",)) == "teams.billing.manager: missing"
    assert refused({}, drop=("head_of_service",)) == "teams.billing.head_of_service: missing"


def test_a_queue_of_an_unknown_team_is_refused() -> None:
    reason = refused({"queues": {"x": {"team": "nobody"}}})
    assert reason == "queues.x.team: unknown team 'nobody'"


def test_a_queue_with_an_unknown_calendar_is_refused() -> None:
    reason = refused({"queues": {"billing-en": {"calendar": "mars"}}})
    assert reason == "queues.billing-en.calendar: unknown calendar 'mars'"


@pytest.mark.parametrize(
    ("calendar", "expected"),
    [
        (
            {"timezone": "Mars/Olympus", "hours": {"mon": "08:00-16:00"}},
            "calendars.c.timezone: unknown time zone",
        ),
        ({"hours": {"mon": "08:00-16:00"}}, "calendars.c.timezone: missing"),
        (
            {"timezone": "UTC", "hours": {"mon": "18:00-08:00"}},
            "calendars.c.hours.mon: expected 'HH:MM-HH:MM'",
        ),
        (
            {"timezone": "UTC", "hours": {"mon": ["08:00-12:00", "11:00-13:00"]}},
            "calendars.c.hours.mon: ranges overlap",
        ),
        (
            {"timezone": "UTC", "hours": {"funday": "08:00-16:00"}},
            "calendars.c.hours.funday: unknown field",
        ),
        ({"timezone": "UTC", "hours": {"mon": []}}, "calendars.c.hours: no opening hours"),
        (
            {"timezone": "UTC", "hours": {"mon": "08:00-16:00"}, "holidays": ["25.12.2025"]},
            "calendars.c.holidays: not a date",
        ),
    ],
)
def test_a_malformed_calendar_is_refused_naming_the_field(
    calendar: dict[str, Any], expected: str
) -> None:
    assert refused({"calendars": {"c": calendar}}).startswith(expected)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"triggers": {"enabled": ["wait_threshold", "telepathy"]}},
            "triggers.enabled: unknown trigger 'telepathy'",
        ),
        ({"triggers": {"wait_threshold_s": 0}}, "triggers.wait_threshold_s: must be > 0"),
        (
            {"triggers": {"sla_clock": "sundial"}},
            "triggers.sla_clock: expected one of queue, resolution",
        ),
        ({"triggers": {"repeat_contacts": 1}}, "triggers.repeat_contacts: must be >= 2"),
        (
            {"queues": {"billing-en": {"triggers": {"low_score": "two"}}}},
            "queues.billing-en.triggers.low_score: expected an integer",
        ),
        (
            {"domains": {"eu": {"triggers": {"colour": "red"}}}},
            "domains.eu.triggers.colour: unknown field",
        ),
        ({"ack_deadlines_s": {"manager": -5}}, "ack_deadlines_s.manager: must be > 0"),
        ({"ack_deadlines_s": {"janitor": 5}}, "ack_deadlines_s.janitor: unknown field"),
        (
            {"severity": {"unroutable": "apocalyptic"}},
            "severity.unroutable: expected one of low, medium, high, critical",
        ),
        ({"access": {"ops": ["marketing"]}}, "access.ops: unknown team 'marketing'"),
        ({"colour": "red"}, "colour: unknown field"),
    ],
)
def test_invalid_values_are_refused_naming_the_field(
    overrides: dict[str, Any], expected: str
) -> None:
    assert refused(overrides) == expected


def test_a_policy_without_queues_or_teams_is_refused() -> None:
    for section in ("queues", "teams"):
        data = merged(BASE, {})
        data[section] = {}
        with pytest.raises(PolicyError, match=f"^{section}: at least one entry is required$"):
            EscalationPolicy.from_dict(data)
        del data[section]
        with pytest.raises(PolicyError, match=f"^{section}: missing$"):
            EscalationPolicy.from_dict(data)


def test_a_prefix_makes_paths_match_the_config_file() -> None:
    data = merged(BASE, {})
    del data["teams"]["sales"]["supervisor"]
    with pytest.raises(PolicyError, match=r"^escalation\.teams\.sales\.supervisor: missing$"):
        EscalationPolicy.from_dict(data, "escalation.")


def test_trigger_settings_layer_defaults_then_domain_then_queue() -> None:
    policy = EscalationPolicy.from_dict(
        merged(
            BASE,
            {
                "domains": {"eu": {"triggers": {"wait_threshold_s": 200, "low_score": 1}}},
                "queues": {"billing-en": {"triggers": {"wait_threshold_s": 100}}},
            },
        )
    )
    assert policy.triggers_for("us", "sales-en").wait_threshold_s == 300
    assert policy.triggers_for("eu", "sales-en").wait_threshold_s == 200
    assert policy.triggers_for("eu", "billing-en").wait_threshold_s == 100
    assert policy.triggers_for("eu", "billing-en").low_score == 1
    assert policy.triggers_for("eu", "tickets").sla_clock is SlaClock.RESOLUTION


def test_people_see_the_teams_they_staff_plus_explicit_grants() -> None:
    policy = EscalationPolicy.from_dict(
        merged(BASE, {"access": {"ops": ["*"], "auditor": "sales"}})
    )
    assert policy.teams_visible_to("sofia") == {"billing"}
    assert policy.teams_visible_to("mira") == {"billing"}  # the default manager, not sales'
    # the default head of service and "*" also see escalations restored without a home
    assert policy.teams_visible_to("hugo") == {"billing", "sales", UNASSIGNED_TEAM}
    assert policy.teams_visible_to("ops") == {"billing", "sales", UNASSIGNED_TEAM}
    assert policy.teams_visible_to("auditor") == {"sales"}
    assert policy.teams_visible_to("stranger") == frozenset()


def test_severity_comes_from_the_reason_and_a_vip_raises_it_one_level() -> None:
    policy = EscalationPolicy.from_dict(merged(BASE, {"severity": {"unroutable": "critical"}}))
    assert policy.severity_for(EscalationReason.WAIT_THRESHOLD, Priority.NORMAL) is Severity.MEDIUM
    assert policy.severity_for(EscalationReason.WAIT_THRESHOLD, Priority.VIP) is Severity.HIGH
    assert policy.severity_for(EscalationReason.LOW_SATISFACTION, Priority.CALLBACK) is Severity.LOW
    assert policy.severity_for(EscalationReason.UNROUTABLE, Priority.VIP) is Severity.CRITICAL


def test_the_tier_chain_is_declared_once_and_climbed_in_order() -> None:
    policy = EscalationPolicy.from_dict(BASE)
    assert policy.first_tier is TIER_CHAIN[0] is Tier.SUPERVISOR
    climbed = [policy.first_tier]
    while (tier := policy.next_tier(climbed[-1])) is not None:
        climbed.append(tier)
    assert tuple(climbed) == TIER_CHAIN == (Tier.SUPERVISOR, Tier.MANAGER, Tier.HEAD_OF_SERVICE)
    assert policy.next_tier(Tier.HEAD_OF_SERVICE) is None


def test_the_chain_is_read_from_the_declaration_not_the_enum_numbers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A chain that skips the manager is followed as declared (no ``tier.value + 1``)."""
    monkeypatch.setattr(policy_module, "TIER_CHAIN", (Tier.SUPERVISOR, Tier.HEAD_OF_SERVICE))
    policy = EscalationPolicy.from_dict(BASE)
    assert policy.next_tier(Tier.SUPERVISOR) is Tier.HEAD_OF_SERVICE
    assert policy.next_tier(Tier.HEAD_OF_SERVICE) is None


def test_an_ack_deadline_counts_from_when_the_tier_got_it_and_may_be_absent() -> None:
    policy = EscalationPolicy.from_dict(BASE)
    assert policy.ack_deadline(Tier.MANAGER, 1000.0) == 1000.0 + 1200
    unset = EscalationPolicy.from_dict({**BASE, "ack_deadlines_s": {}})
    assert unset.ack_deadline(Tier.SUPERVISOR, 0.0) == 900.0  # the default
    assert unset.ack_deadline(Tier.HEAD_OF_SERVICE, 0.0) is None  # nothing above: no default


def test_teams_to_show_defaults_to_all_visible_and_refuses_naming_the_rest() -> None:
    policy = EscalationPolicy.from_dict(merged(BASE, {"access": {"auditor": "sales"}}))
    assert policy.teams_to_show("sofia", []) == {"billing"}
    assert policy.teams_to_show("hugo", ["sales"]) == {"sales"}
    with pytest.raises(PermissionDenied, match=r"auditor may not see team\(s\) \['billing'\]"):
        policy.teams_to_show("auditor", ["sales", "billing"])
    assert policy.teams_to_show("stranger", []) == frozenset()


def test_a_vip_steps_low_severity_up_to_medium() -> None:
    policy = EscalationPolicy.from_dict(BASE)
    assert policy.severity_for(EscalationReason.LOW_SATISFACTION, Priority.VIP) is Severity.MEDIUM
