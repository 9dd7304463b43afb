"""What changes between two policies, in words, for ``switchboard policy diff``. Pure.

Both sides are compared as the services read them (parsed, defaults filled in), so a
field written out with its default value is no change, and a table a document leaves
out is compared as the configured default it means. One line per change, grouped by
table::

    routing:
      queue added: faktury (needs billing >= 3, language pl, longest_idle, 80% within 20s)
      queue removed: tech-ru
      billing-en: skill billing threshold 3 -> 4
      billing-en: step 1: after 30s -> 45s; proficiency relaxed by 1 -> 2
      capacity: chat 3 -> 2 contacts at once
    escalation:
      deadline: manager acknowledges within 240s -> 180s
      calendar warsaw-office: fri 08:00-17:00 -> 08:00-16:00; holiday added 2026-11-11
    notification:
      position_min_interval_s: 30 -> 45

Fields this module does not word specially are still compared (``name: old -> new``),
so a field a parser gains later shows up too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from services.common.business_hours import BusinessCalendar
from services.escalation.domain import EscalationPolicy
from services.escalation.domain.policy import QueuePolicy as EscalationQueue
from services.escalation.domain.policy import TeamPolicy, TriggerSettings
from services.notifier.domain.core import NotifierPolicy
from services.policy.validation import ParsedPolicy
from services.router.domain import RoutingPolicy
from services.router.domain.policy import QueuePolicy, RelaxationStep

__all__ = [
    "diff_escalation",
    "diff_notification",
    "diff_policies",
    "diff_routing",
]

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def diff_policies(old: ParsedPolicy, new: ParsedPolicy, default: ParsedPolicy) -> list[str]:
    """Every change from ``old`` to ``new``, grouped by table; a table a side leaves
    out is ``default``'s (the services' configured default). ``["no changes"]`` if none."""
    lines: list[str] = []
    sections: list[tuple[str, Any, Any, Any, Callable[[Any, Any], list[str]]]] = [
        ("routing", old.routing, new.routing, default.routing, diff_routing),
        ("escalation", old.escalation, new.escalation, default.escalation, diff_escalation),
        (
            "notification",
            old.notification,
            new.notification,
            default.notification,
            diff_notification,
        ),
    ]
    for name, before, after, fallback, differ in sections:
        changes: list[str] = []
        left, right = before or fallback, after or fallback
        if left is not None and right is not None:
            changes = differ(left, right)
        elif left is not right:
            changes = [f"[{name}] cannot be compared: no configured default is known"]
        if before is not None and after is None:
            changes.insert(0, f"[{name}] left out: the configured default applies")
        elif before is None and after is not None:
            changes.insert(
                0,
                f"[{name}] given (was the configured default)"
                if changes
                else f"[{name}] given, the same as the configured default (it no longer "
                "follows a change of the default)",
            )
        if changes:
            lines.append(f"{name}:")
            lines += [f"  {change}" for change in changes]
    return lines or ["no changes"]


# ------------------------------------------------------------------------------ words


def _n(value: float) -> str:
    return f"{value:g}"


def _s(value: float | None) -> str:
    return "none" if value is None else f"{value:g}s"


def _names(values: Iterable[str]) -> str:
    listed = sorted(values)
    return ", ".join(listed) if listed else "(none)"


def _change(what: str, old: object, new: object, show: Callable[[Any], str] = str) -> list[str]:
    return [] if old == new else [f"{what} {show(old)} -> {show(new)}"]


def _other_fields(old: Any, new: Any, handled: set[str], prefix: str = "") -> list[str]:
    """``field: old -> new`` for every dataclass field not worded specially."""
    lines = []
    for f in dataclasses.fields(old):
        if f.name in handled:
            continue
        before, after = getattr(old, f.name), getattr(new, f.name, None)
        if before != after:
            lines.append(f"{prefix}{f.name}: {_value(before)} -> {_value(after)}")
    return lines


def _value(value: object) -> str:
    if isinstance(value, float):
        return _n(value)
    if isinstance(value, frozenset | set):
        return _names(str(v) for v in value)
    return str(value)


def _added_removed(what: str, old: Iterable[str], new: Iterable[str]) -> list[str]:
    before, after = set(old), set(new)
    lines = []
    if after - before:
        lines.append(f"{what} added: {_names(after - before)}")
    if before - after:
        lines.append(f"{what} removed: {_names(before - after)}")
    return lines


# ---------------------------------------------------------------------------- routing


def _skills(skills: Iterable[tuple[str, int]]) -> str:
    return ", ".join(f"{skill} >= {level}" for skill, level in skills) or "no skill"


def _queue_summary(q: QueuePolicy) -> str:
    parts = [
        f"needs {_skills(q.skills)}",
        f"language {q.language or 'any'}",
        q.strategy.value,
        f"{q.service_level_target:.0%} within {_s(q.service_level_s)}",
        f"offer timeout {_s(q.offer_timeout_s)}",
    ]
    if q.steps:
        parts.append(f"{len(q.steps)} step(s)")
    return ", ".join(parts)


def _step_words(step: RelaxationStep) -> str:
    parts = [f"after {_s(step.after_s)}"]
    if step.min_proficiency_delta:
        parts.append(f"proficiency relaxed by {step.min_proficiency_delta}")
    if step.drop_optional_skills:
        parts.append("optional skills dropped")
    if step.release_preferred_agent:
        parts.append("preferred agent released")
    if step.overflow_queues:
        parts.append(f"overflow to {', '.join(step.overflow_queues)}")
    return ", ".join(parts)


def _step_changes(old: RelaxationStep, new: RelaxationStep) -> list[str]:
    changes = _change("after", old.after_s, new.after_s, _s)
    changes += _change(
        "proficiency relaxed by", old.min_proficiency_delta, new.min_proficiency_delta
    )
    changes += _change(
        "optional skills dropped", old.drop_optional_skills, new.drop_optional_skills, _yes
    )
    changes += _change(
        "preferred agent released", old.release_preferred_agent, new.release_preferred_agent, _yes
    )
    changes += _change(
        "overflow to",
        old.overflow_queues,
        new.overflow_queues,
        lambda q: ", ".join(q) or "(none)",
    )
    changes += _other_fields(
        old,
        new,
        {
            "after_s",
            "min_proficiency_delta",
            "drop_optional_skills",
            "release_preferred_agent",
            "overflow_queues",
        },
    )
    return changes


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _skill_changes(
    kind: str, old: Iterable[tuple[str, int]], new: Iterable[tuple[str, int]]
) -> list[str]:
    before, after = dict(old), dict(new)
    lines = []
    for skill in sorted(set(before) | set(after)):
        if skill not in before:
            lines.append(f"{kind} {skill} added (>= {after[skill]})")
        elif skill not in after:
            lines.append(f"{kind} {skill} no longer needed (was >= {before[skill]})")
        elif before[skill] != after[skill]:
            lines.append(f"{kind} {skill} threshold {before[skill]} -> {after[skill]}")
    return lines


_QUEUE_WORDED = {
    "name",
    "skills",
    "optional_skills",
    "language",
    "strategy",
    "service_level_s",
    "service_level_target",
    "offer_timeout_s",
    "wrap_up_s",
    "steps",
    "preferred_agent_timeout_s",
}


def _queue_changes(old: QueuePolicy, new: QueuePolicy) -> list[str]:
    changes = _skill_changes("skill", old.skills, new.skills)
    changes += _skill_changes("optional skill", old.optional_skills, new.optional_skills)
    changes += _change("language", old.language or "any", new.language or "any")
    changes += _change("strategy", old.strategy.value, new.strategy.value)
    if (old.service_level_target, old.service_level_s) != (
        new.service_level_target,
        new.service_level_s,
    ):
        changes.append(
            f"service level target {old.service_level_target:.0%} within "
            f"{_s(old.service_level_s)} -> {new.service_level_target:.0%} within "
            f"{_s(new.service_level_s)}"
        )
    changes += _change("offer timeout", old.offer_timeout_s, new.offer_timeout_s, _s)
    changes += _change("wrap-up", old.wrap_up_s, new.wrap_up_s, _s)
    changes += _change(
        "preferred agent kept for",
        old.preferred_agent_timeout_s,
        new.preferred_agent_timeout_s,
        _s,
    )
    for i in range(max(len(old.steps), len(new.steps))):
        if i >= len(new.steps):
            changes.append(f"step {i + 1} removed (was: {_step_words(old.steps[i])})")
        elif i >= len(old.steps):
            changes.append(f"step {i + 1} added: {_step_words(new.steps[i])}")
        elif step := _step_changes(old.steps[i], new.steps[i]):
            changes.append(f"step {i + 1}: " + "; ".join(step))
    changes += _other_fields(old, new, _QUEUE_WORDED)
    return changes


def _renamed(old: QueuePolicy, new: QueuePolicy) -> bool:
    return dataclasses.replace(old, name=new.name) == new


def diff_routing(old: RoutingPolicy, new: RoutingPolicy) -> list[str]:
    """Queues added, removed (or renamed: same settings under another name), each
    queue's skills, strategy, service level, timeouts and steps; capacity and the rest."""
    lines: list[str] = []
    removed = [q for name, q in old.queues.items() if name not in new.queues]
    added = [q for name, q in new.queues.items() if name not in old.queues]
    for gone in list(removed):
        twin = next((q for q in added if _renamed(gone, q)), None)
        if twin is not None:
            lines.append(f"queue renamed? {gone.name} -> {twin.name} (same settings)")
            removed.remove(gone)
            added.remove(twin)
    lines += [f"queue added: {q.name} ({_queue_summary(q)})" for q in added]
    lines += [f"queue removed: {q.name}" for q in removed]
    for name, queue in old.queues.items():
        if (proposed := new.queues.get(name)) is not None:
            lines += [f"{name}: {change}" for change in _queue_changes(queue, proposed)]
    for channel in sorted(set(old.capacity) | set(new.capacity)):
        before, after = old.capacity.get(channel, 0), new.capacity.get(channel, 0)
        if before != after:
            lines.append(
                f"capacity: {channel.name.lower()} {before} -> {after} contacts at once per agent"
            )
    if old.max_total != new.max_total:
        lines.append(
            f"capacity: {old.max_total} -> {new.max_total} contacts at once per agent "
            "across channels"
        )
    for priority in sorted(set(old.aging_s_per_priority) | set(new.aging_s_per_priority)):
        lines += _change(
            f"priority {priority.name.lower()} counts as waiting longer by",
            old.aging_s_per_priority.get(priority, 0.0),
            new.aging_s_per_priority.get(priority, 0.0),
            _s,
        )
    lines += _change(
        "queue positions refreshed every", old.position_refresh_s, new.position_refresh_s, _s
    )
    lines += _change(
        "handle time assumed until measured", old.default_handle_s, new.default_handle_s, _s
    )
    lines += _change(
        "contacts of a removed queue go to",
        old.fallback_queue,
        new.fallback_queue,
        lambda q: q or "(none: they are parked and reported unroutable)",
    )
    lines += _other_fields(
        old,
        new,
        {
            "queues",
            "capacity",
            "max_total",
            "aging_s_per_priority",
            "position_refresh_s",
            "default_handle_s",
            "fallback_queue",
        },
    )
    return lines


# ------------------------------------------------------------------------- escalation


def _minutes(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _hours(ranges: Iterable[tuple[int, int]]) -> str:
    return ", ".join(f"{_minutes(a)}-{_minutes(b)}" for a, b in ranges) or "closed"


def _calendar_summary(c: BusinessCalendar) -> str:
    if c.always_open:
        return "always open"
    days = "; ".join(f"{d} {_hours(r)}" for d, r in zip(_DAYS, c.weekly, strict=True) if r)
    holidays = f", {len(c.holidays)} holiday(s)" if c.holidays else ""
    return f"{c.zone.key}: {days}{holidays}"


def _calendar_changes(old: BusinessCalendar, new: BusinessCalendar) -> list[str]:
    changes = _change("time zone", old.zone.key, new.zone.key)
    for day, before, after in zip(_DAYS, old.weekly, new.weekly, strict=True):
        changes += _change(day, before, after, _hours)
    for holiday in sorted(new.holidays - old.holidays):
        changes.append(f"holiday added {holiday.isoformat()}")
    for holiday in sorted(old.holidays - new.holidays):
        changes.append(f"holiday removed {holiday.isoformat()}")
    return changes


def _team_changes(old: TeamPolicy, new: TeamPolicy) -> list[str]:
    changes = _change("supervisor", old.supervisor, new.supervisor)
    changes += _change("manager", old.manager, new.manager)
    changes += _change("head of service", old.head_of_service, new.head_of_service)
    return changes


def _team_summary(t: TeamPolicy) -> str:
    return f"supervisor {t.supervisor}, manager {t.manager}, head of service {t.head_of_service}"


def _trigger_value(value: object) -> str:
    if isinstance(value, frozenset):
        return _names(getattr(v, "slug", str(v)) for v in value)
    if hasattr(value, "value") and not isinstance(value, int | float):
        return str(value.value)
    return _value(value)


def _trigger_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    changes = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if before != after:
            show = [("(default)" if v is None else _trigger_value(v)) for v in (before, after)]
            changes.append(f"{key} {show[0]} -> {show[1]}")
    return changes


def _triggers_as_dict(t: TriggerSettings) -> dict[str, Any]:
    return {f.name: getattr(t, f.name) for f in dataclasses.fields(t)}


def _queue_escalation_changes(old: EscalationQueue, new: EscalationQueue) -> list[str]:
    changes = _change("team", old.team, new.team)
    if old.calendar != new.calendar:
        changes.append(f"calendar {_calendar_name(old.calendar)} -> {_calendar_name(new.calendar)}")
    for change in _trigger_changes(old.trigger_overrides, new.trigger_overrides):
        changes.append(f"trigger {change}")
    return changes


def _calendar_name(c: BusinessCalendar) -> str:
    return "always open" if c.always_open else c.name


def diff_escalation(old: EscalationPolicy, new: EscalationPolicy) -> list[str]:
    """People, teams and who answers at each tier, acknowledgement deadlines, triggers
    (defaults, per domain, per queue), queues' teams and calendars, calendars' hours and
    holidays, severities, access."""
    lines = _added_removed("people", old.people(), new.people())
    for name in sorted(set(old.teams) | set(new.teams)):
        if name not in old.teams:
            lines.append(f"team added: {name} ({_team_summary(new.teams[name])})")
        elif name not in new.teams:
            lines.append(f"team removed: {name}")
        elif changes := _team_changes(old.teams[name], new.teams[name]):
            lines.append(f"team {name}: " + "; ".join(changes))
    for tier in sorted(set(old.ack_deadlines_s) | set(new.ack_deadlines_s)):
        lines += _change(
            f"deadline: {tier.slug.replace('_', ' ')} acknowledges within",
            old.ack_deadlines_s.get(tier),
            new.ack_deadlines_s.get(tier),
            _s,
        )
    lines += [
        f"triggers: {c}"
        for c in _trigger_changes(_triggers_as_dict(old.triggers), _triggers_as_dict(new.triggers))
    ]
    for domain in sorted(set(old.domain_overrides) | set(new.domain_overrides)):
        for change in _trigger_changes(
            old.domain_overrides.get(domain, {}), new.domain_overrides.get(domain, {})
        ):
            lines.append(f"triggers for domain {domain}: {change}")
    for name in sorted(set(old.queues) | set(new.queues)):
        if name not in old.queues:
            q = new.queues[name]
            lines.append(
                f"queue added: {name} (team {q.team}, calendar {_calendar_name(q.calendar)})"
            )
        elif name not in new.queues:
            lines.append(f"queue removed: {name}")
        elif changes := _queue_escalation_changes(old.queues[name], new.queues[name]):
            lines.append(f"queue {name}: " + "; ".join(changes))
    for name in sorted(set(old.calendars) | set(new.calendars)):
        if name not in old.calendars:
            lines.append(f"calendar added: {name} ({_calendar_summary(new.calendars[name])})")
        elif name not in new.calendars:
            lines.append(f"calendar removed: {name}")
        elif changes := _calendar_changes(old.calendars[name], new.calendars[name]):
            lines.append(f"calendar {name}: " + "; ".join(changes))
    for reason in sorted(set(old.severity) | set(new.severity)):
        lines += _change(
            f"severity of {reason.slug}",
            getattr(old.severity.get(reason), "slug", None),
            getattr(new.severity.get(reason), "slug", None),
        )
    for person in sorted(set(old.access) | set(new.access)):
        lines += _change(
            f"access of {person}",
            old.access.get(person, frozenset()),
            new.access.get(person, frozenset()),
            _names,
        )
    lines += _change("head of service", old.head_of_service, new.head_of_service)
    lines += _change("closed cases kept", old.retain_closed_s, new.retain_closed_s, _s)
    lines += _change("idle cases forgotten after", old.forget_idle_s, new.forget_idle_s, _s)
    lines += _other_fields(
        old,
        new,
        {
            "queues",
            "teams",
            "ack_deadlines_s",
            "triggers",
            "domain_overrides",
            "severity",
            "calendars",
            "access",
            "head_of_service",
            "retain_closed_s",
            "forget_idle_s",
        },
    )
    return lines


# ----------------------------------------------------------------------- notification


def diff_notification(old: NotifierPolicy, new: NotifierPolicy) -> list[str]:
    """Each threshold of the notifier's policy that changes; its business hours (when
    customers are told the center is closed) and what it keeps quiet outside them."""
    lines = []
    if old.business_hours != new.business_hours:
        if old.business_hours.always_open or new.business_hours.always_open:
            lines.append(
                f"business hours: {_calendar_summary(old.business_hours)} -> "
                f"{_calendar_summary(new.business_hours)}"
            )
        else:
            changes = _calendar_changes(old.business_hours, new.business_hours)
            lines.append("business hours: " + "; ".join(changes))
    lines += _change(
        "kept quiet outside business hours:",
        old.quiet_outside_hours,
        new.quiet_outside_hours,
        _names,
    )
    return lines + _other_fields(old, new, {"business_hours", "quiet_outside_hours"})
