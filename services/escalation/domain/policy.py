"""Escalation policy: triggers, people per tier, deadlines, calendars. Validated once, at start.

Built from a plain dict (the parsed ``[escalation]`` TOML table) by
:meth:`EscalationPolicy.from_dict`. A policy that cannot be satisfied raises
:class:`PolicyError` whose reason starts with the field path, e.g.
``teams.billing.supervisor: missing``. Example::

    [escalation]
    manager = "mira"                    # default manager of every team
    head_of_service = "hugo"            # default head of customer service
    retain_closed_s = 259200            # keep closed cases 3 days for late surveys/reopens
    forget_idle_s = 604800              # forget a case with no event for 7 days

    [escalation.ack_deadlines_s]        # acknowledge within, or go one tier up (TIER_CHAIN)
    supervisor = 900
    manager = 1800
    head_of_service = 3600              # optional: shown, nothing above it

    [escalation.triggers]               # defaults for every queue
    enabled = ["wait_threshold", "unroutable", "pause_overrun", "unresolved", "reopened",
               "repeat_contact", "manager_requested", "low_satisfaction"]
    wait_threshold_s = 300              # business-hours seconds
    sla_clock = "queue"                 # "queue": until assigned; "resolution": until ended
    pause_grace_s = 30                  # tolerated overrun of a promised hold/pause
    repeat_contacts = 3                 # N contacts by one customer ...
    repeat_window_s = 86400             # ... within this window
    low_score = 2                       # survey score at or below this escalates

    [escalation.severity]               # optional, per reason; VIP adds one level
    unroutable = "high"

    [escalation.domains.eu-1.triggers]  # per-domain overrides of the defaults
    wait_threshold_s = 240

    [escalation.teams.billing]
    supervisor = "sofia"
    manager = "marek"                   # overrides the default

    [escalation.calendars.warsaw]
    timezone = "Europe/Warsaw"          # local opening hours, via zoneinfo
    holidays = ["2025-12-25", "2025-12-26"]
    [escalation.calendars.warsaw.hours] # days left out are closed
    mon = "08:00-18:00"
    tue = "08:00-18:00"
    wed = "08:00-18:00"
    thu = "08:00-18:00"
    fri = ["08:00-12:00", "13:00-17:00"]

    [escalation.queues.billing-en]
    team = "billing"
    calendar = "warsaw"                 # omitted: always open
    triggers = {wait_threshold_s = 120} # per-queue overrides (win over the domain's)

    [escalation.access]                 # extra visibility beyond the teams one staffs
    ops-lead = ["*"]                    # "*": every team
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from services.common.business_hours import (
    ALWAYS_OPEN,
    BusinessCalendar,
    CalendarError,
    parse_calendar,
)
from services.common.policy_document import PolicyDocumentError, policy_tables
from services.escalation.domain.errors import PermissionDenied, PolicyError
from services.escalation.domain.model import EscalationReason, Priority, Severity, Tier

__all__ = [
    "DEFAULT_SEVERITY",
    "MAX_REPEAT_CONTACTS",
    "TIER_CHAIN",
    "UNASSIGNED_TEAM",
    "EscalationPolicy",
    "QueuePolicy",
    "SlaClock",
    "TeamPolicy",
    "TriggerSettings",
    "policy_in_document",
]

#: How urgent each reason is for an ordinary customer; a VIP adds one level.
DEFAULT_SEVERITY: Mapping[EscalationReason, Severity] = {
    EscalationReason.WAIT_THRESHOLD: Severity.MEDIUM,
    EscalationReason.UNROUTABLE: Severity.HIGH,
    EscalationReason.PAUSE_OVERRUN: Severity.MEDIUM,
    EscalationReason.UNRESOLVED: Severity.MEDIUM,
    EscalationReason.REOPENED: Severity.MEDIUM,
    EscalationReason.REPEAT_CONTACT: Severity.MEDIUM,
    EscalationReason.MANAGER_REQUESTED: Severity.HIGH,
    EscalationReason.LOW_SATISFACTION: Severity.LOW,
}

#: The tiers an unacknowledged escalation climbs, first to last. Declared here and only
#: here: the enum numbers of :class:`Tier` are wire values, not an order.
TIER_CHAIN: tuple[Tier, ...] = (Tier.SUPERVISOR, Tier.MANAGER, Tier.HEAD_OF_SERVICE)
#: A customer's contact history keeps at most this many arrivals (a shared customer id
#: such as "anonymous" must not grow it without bound); ``repeat_contacts`` is at most it.
MAX_REPEAT_CONTACTS = 100
#: Where a restored open escalation goes when its team or queue is no longer configured:
#: the default head of service (and anyone with access to every team) sees it.
UNASSIGNED_TEAM = "unassigned"

#: Severities from least to most urgent: a VIP's escalation is one step up.
_SEVERITY_LADDER: tuple[Severity, ...] = (
    Severity.LOW,
    Severity.MEDIUM,
    Severity.HIGH,
    Severity.CRITICAL,
)


class SlaClock(Enum):
    """What the wait threshold measures (both on business hours, both stop for the customer).

    QUEUE: time waiting for an agent (arrival to assignment): voice and chat queues.
    RESOLUTION: time until the contact ends (assignment does not stop it): ticket queues.
    """

    QUEUE = "queue"
    RESOLUTION = "resolution"


@dataclass(frozen=True, slots=True)
class TriggerSettings:
    """One queue's trigger settings, after defaults, domain and queue overrides."""

    enabled: frozenset[EscalationReason] = frozenset(EscalationReason)
    wait_threshold_s: float = 300.0
    sla_clock: SlaClock = SlaClock.QUEUE
    pause_grace_s: float = 0.0
    repeat_contacts: int = 3
    repeat_window_s: float = 86_400.0
    low_score: int = 2


@dataclass(frozen=True, slots=True)
class TeamPolicy:
    """Who answers for a team at each tier."""

    name: str
    supervisor: str
    manager: str
    head_of_service: str

    def person(self, tier: Tier) -> str:
        """Who answers at ``tier``."""
        if tier is Tier.SUPERVISOR:
            return self.supervisor
        if tier is Tier.MANAGER:
            return self.manager
        return self.head_of_service


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    """A queue: its team, its business hours and its trigger overrides (validated, partial)."""

    name: str
    team: str
    calendar: BusinessCalendar = ALWAYS_OPEN
    trigger_overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    """The whole policy; build it with :meth:`from_dict`."""

    queues: Mapping[str, QueuePolicy]
    teams: Mapping[str, TeamPolicy]
    ack_deadlines_s: Mapping[Tier, float]
    triggers: TriggerSettings = TriggerSettings()
    domain_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    severity: Mapping[EscalationReason, Severity] = field(
        default_factory=lambda: dict(DEFAULT_SEVERITY)
    )
    calendars: Mapping[str, BusinessCalendar] = field(default_factory=dict)
    access: Mapping[str, frozenset[str]] = field(default_factory=dict)
    #: The default head of customer service (``head_of_service``): unassigned escalations'.
    head_of_service: str = ""
    retain_closed_s: float = 3 * 86_400.0
    forget_idle_s: float = 7 * 86_400.0

    def triggers_for(self, domain: str, queue: str) -> TriggerSettings:
        """Defaults, then the domain's overrides, then the queue's."""
        settings = replace(self.triggers, **self.domain_overrides.get(domain, {}))
        return replace(settings, **self.queues[queue].trigger_overrides)

    def severity_for(self, reason: EscalationReason, priority: Priority) -> Severity:
        """The reason's severity, one level higher for a VIP (at most CRITICAL)."""
        base = self.severity[reason]
        if priority is Priority.VIP:
            step = _SEVERITY_LADDER.index(base) + 1
            return _SEVERITY_LADDER[min(step, len(_SEVERITY_LADDER) - 1)]
        return base

    @property
    def first_tier(self) -> Tier:
        """The tier a new escalation is raised at."""
        return TIER_CHAIN[0]

    def next_tier(self, tier: Tier) -> Tier | None:
        """The tier an unacknowledged escalation at ``tier`` moves to; None at the top.

        The chain is the same for every team (only the people differ, :class:`TeamPolicy`).
        """
        step = TIER_CHAIN.index(tier) + 1
        return TIER_CHAIN[step] if step < len(TIER_CHAIN) else None

    def ack_deadline(self, tier: Tier, since: float) -> float | None:
        """When ``tier`` must acknowledge an escalation it was given at ``since``.

        None when the policy sets no deadline for ``tier`` (by default the last one).
        """
        deadline_s = self.ack_deadlines_s.get(tier)
        return None if deadline_s is None else since + deadline_s

    def teams_visible_to(self, person: str) -> frozenset[str]:
        """The teams a person staffs at any tier, plus any explicit ``access`` grant."""
        staffed = {t.name for t in self.teams.values() if person in _people(t)}
        if person and person == self.head_of_service:
            staffed.add(UNASSIGNED_TEAM)
        return frozenset(staffed) | self.access.get(person, frozenset())

    def people(self) -> frozenset[str]:
        """Everyone the policy names: staff of a team at any tier, or granted access."""
        named = {person for t in self.teams.values() for person in _people(t)}
        return frozenset(person for person in named | set(self.access) if person)

    def teams_to_show(self, person: str, requested: Collection[str]) -> frozenset[str]:
        """The teams ``person`` asked to see (all they may see if none were named).

        Raises :class:`PermissionDenied` naming any requested team they may not see.
        """
        visible = self.teams_visible_to(person)
        if not requested:
            return visible
        denied = set(requested) - visible
        if denied:
            raise PermissionDenied(f"{person} may not see team(s) {sorted(denied)}")
        return frozenset(requested)

    @property
    def max_repeat_window_s(self) -> float:
        """How long a customer's contact history must be kept to answer every queue."""
        windows = [self.triggers.repeat_window_s]
        windows += [o.get("repeat_window_s", 0.0) for o in self.domain_overrides.values()]
        windows += [q.trigger_overrides.get("repeat_window_s", 0.0) for q in self.queues.values()]
        return max(windows)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], prefix: str = "") -> EscalationPolicy:
        """Validate a parsed TOML table; ``prefix`` (e.g. ``"escalation."``) starts paths."""
        p = _Paths(prefix)
        known = {
            "queues",
            "teams",
            "ack_deadlines_s",
            "triggers",
            "domains",
            "severity",
            "calendars",
            "access",
            "manager",
            "head_of_service",
            "retain_closed_s",
            "forget_idle_s",
        }
        _no_unknown(data, known, p, "")
        default_manager = _optional_person(data, "manager", p, "")
        default_head = _optional_person(data, "head_of_service", p, "")

        raw_teams = _table(data, "teams", p, "", required=True)
        teams: dict[str, TeamPolicy] = {}
        for name, raw in raw_teams.items():
            where = f"teams.{name}"
            team = _mapping(raw, p, where)
            _no_unknown(team, {"supervisor", "manager", "head_of_service"}, p, where)
            supervisor = _optional_person(team, "supervisor", p, where)
            manager = _optional_person(team, "manager", p, where) or default_manager
            head = _optional_person(team, "head_of_service", p, where) or default_head
            for role, person in (
                ("supervisor", supervisor),
                ("manager", manager),
                ("head_of_service", head),
            ):
                if not person:
                    raise PolicyError(f"{p(where, role)}: missing")
            teams[name] = TeamPolicy(name, supervisor, manager, head)

        calendars = {
            name: _calendar(name, raw, p) for name, raw in _table(data, "calendars", p, "").items()
        }

        raw_queues = _table(data, "queues", p, "", required=True)
        queues: dict[str, QueuePolicy] = {}
        for name, raw in raw_queues.items():
            where = f"queues.{name}"
            queue = _mapping(raw, p, where)
            _no_unknown(queue, {"team", "calendar", "triggers"}, p, where)
            team_name = queue.get("team")
            if not team_name:
                raise PolicyError(f"{p(where, 'team')}: missing")
            if team_name not in teams:
                raise PolicyError(f"{p(where, 'team')}: unknown team {team_name!r}")
            calendar = ALWAYS_OPEN
            if "calendar" in queue:
                calendar_name = queue["calendar"]
                if calendar_name not in calendars:
                    raise PolicyError(f"{p(where, 'calendar')}: unknown calendar {calendar_name!r}")
                calendar = calendars[calendar_name]
            overrides = _triggers(_table(queue, "triggers", p, where), p, f"{where}.triggers")
            queues[name] = QueuePolicy(name, team_name, calendar, overrides)

        ack = _table(data, "ack_deadlines_s", p, "")
        _no_unknown(ack, {t.slug for t in Tier}, p, "ack_deadlines_s")
        deadlines: dict[Tier, float] = {Tier.SUPERVISOR: 900.0, Tier.MANAGER: 1800.0}
        for key, value in ack.items():
            deadlines[Tier.from_slug(key)] = _number(
                value, p, "ack_deadlines_s", key, positive=True
            )

        defaults = TriggerSettings()
        raw_defaults = _triggers(_table(data, "triggers", p, ""), p, "triggers")
        domains: dict[str, Mapping[str, Any]] = {}
        for domain, raw in _table(data, "domains", p, "").items():
            where = f"domains.{domain}"
            section = _mapping(raw, p, where)
            _no_unknown(section, {"triggers"}, p, where)
            domains[domain] = _triggers(
                _table(section, "triggers", p, where), p, f"{where}.triggers"
            )

        severity = dict(DEFAULT_SEVERITY)
        raw_severity = _table(data, "severity", p, "")
        _no_unknown(raw_severity, {r.slug for r in EscalationReason}, p, "severity")
        for key, value in raw_severity.items():
            severity[EscalationReason.from_slug(key)] = _slug_enum(
                Severity, value, p, "severity", key
            )

        access: dict[str, frozenset[str]] = {}
        for person, raw in _table(data, "access", p, "").items():
            granted = _strings(raw, p, "access", person)
            for team_name in granted:
                if team_name != "*" and team_name not in teams:
                    raise PolicyError(f"{p('access', person)}: unknown team {team_name!r}")
            access[person] = (
                frozenset({*teams, UNASSIGNED_TEAM}) if "*" in granted else frozenset(granted)
            )

        return cls(
            queues=queues,
            teams=teams,
            ack_deadlines_s=deadlines,
            triggers=replace(defaults, **raw_defaults),
            domain_overrides=domains,
            severity=severity,
            calendars=calendars,
            access=access,
            head_of_service=default_head,
            retain_closed_s=_number(
                data.get("retain_closed_s", 3 * 86_400.0), p, "", "retain_closed_s"
            ),
            forget_idle_s=_number(
                data.get("forget_idle_s", 7 * 86_400.0), p, "", "forget_idle_s", positive=True
            ),
        )


def policy_in_document(document: str, default: EscalationPolicy) -> EscalationPolicy:
    """The policy a domain's policy document (``policy.proto``) gives escalation: its
    ``[escalation]`` table, read as escalation.toml's, or ``default`` (the configured one)
    when it has none. Raises :class:`PolicyError` naming the field."""
    try:
        table = policy_tables(document).get("escalation")
    except PolicyDocumentError as exc:
        raise PolicyError(exc.reason) from None
    return default if table is None else EscalationPolicy.from_dict(table, prefix="escalation.")


# --- parsing helpers ------------------------------------------------------------------


class _Paths:
    """Joins field paths under an optional prefix: ``p("teams.x", "supervisor")``."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, where: str, key: str = "") -> str:
        path = ".".join(part for part in (where, key) if part)
        return f"{self.prefix}{path}"


def _people(team: TeamPolicy) -> tuple[str, str, str]:
    return (team.supervisor, team.manager, team.head_of_service)


def _mapping(raw: object, p: _Paths, where: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{p(where)}: expected a table")
    return raw


def _table(
    data: Mapping[str, Any], key: str, p: _Paths, where: str, *, required: bool = False
) -> Mapping[str, Any]:
    if key not in data:
        if required:
            raise PolicyError(f"{p(where, key)}: missing")
        return {}
    table = _mapping(data[key], p, p(where, key)[len(p.prefix) :])
    if required and not table:
        raise PolicyError(f"{p(where, key)}: at least one entry is required")
    return table


def _no_unknown(data: Mapping[str, Any], known: Iterable[str], p: _Paths, where: str) -> None:
    for key in data:
        if key not in set(known):
            raise PolicyError(f"{p(where, key)}: unknown field")


def _optional_person(data: Mapping[str, Any], key: str, p: _Paths, where: str) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise PolicyError(f"{p(where, key)}: expected a person's identity (a string)")
    return value.strip()


def _number(value: object, p: _Paths, where: str, key: str, *, positive: bool = False) -> float:
    if isinstance(value, str):  # an environment override, as the router's policy reads one
        try:
            value = float(value)
        except ValueError:
            raise PolicyError(f"{p(where, key)}: expected a number") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyError(f"{p(where, key)}: expected a number")
    if value < 0 or (positive and value == 0):
        raise PolicyError(f"{p(where, key)}: must be {'> 0' if positive else '>= 0'}")
    return float(value)


def _integer(value: object, p: _Paths, where: str, key: str, *, minimum: int) -> int:
    if isinstance(value, str):  # an environment override
        try:
            value = int(value)
        except ValueError:
            raise PolicyError(f"{p(where, key)}: expected an integer") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(f"{p(where, key)}: expected an integer")
    if value < minimum:
        raise PolicyError(f"{p(where, key)}: must be >= {minimum}")
    return value


def _strings(value: object, p: _Paths, where: str, key: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyError(f"{p(where, key)}: expected a list of strings")
    return list(value)


def _slug_enum(enum: type[Severity], value: object, p: _Paths, where: str, key: str) -> Severity:
    names = [m.slug for m in enum]
    if not isinstance(value, str) or value.lower() not in names:
        raise PolicyError(f"{p(where, key)}: expected one of {', '.join(names)}")
    return enum[value.upper()]


def _triggers(raw: Mapping[str, Any], p: _Paths, where: str) -> dict[str, Any]:
    """Validated, partial trigger fields (only the ones given), ready for ``replace``."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "enabled":
            enabled: set[EscalationReason] = set()
            for slug in _strings(value, p, where, key):
                if slug.upper() not in EscalationReason.__members__:
                    raise PolicyError(f"{p(where, key)}: unknown trigger {slug!r}")
                enabled.add(EscalationReason[slug.upper()])
            out[key] = frozenset(enabled)
        elif key == "sla_clock":
            choices = [c.value for c in SlaClock]
            if value not in choices:
                raise PolicyError(f"{p(where, key)}: expected one of {', '.join(choices)}")
            out[key] = SlaClock(value)
        elif key in ("wait_threshold_s", "repeat_window_s"):
            out[key] = _number(value, p, where, key, positive=True)
        elif key == "pause_grace_s":
            out[key] = _number(value, p, where, key)
        elif key == "repeat_contacts":
            out[key] = _integer(value, p, where, key, minimum=2)
            if out[key] > MAX_REPEAT_CONTACTS:
                raise PolicyError(f"{p(where, key)}: must be <= {MAX_REPEAT_CONTACTS}")
        elif key == "low_score":
            out[key] = _integer(value, p, where, key, minimum=1)
        else:
            raise PolicyError(f"{p(where, key)}: unknown field")
    return out


def _calendar(name: str, raw: object, p: _Paths) -> BusinessCalendar:
    try:
        return parse_calendar(name, raw, p(f"calendars.{name}"))
    except CalendarError as exc:
        raise PolicyError(exc.reason) from None
