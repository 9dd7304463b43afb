"""Customer-message templates: validated at start, rendered per customer. Pure: the
documents arrive parsed (``services.notifier.adapters.templates`` reads the files).

One document per language (``en``, ``ru``, ``pl``); a table per message kind with one
text per channel style (``sms``, ``email`` + ``email_subject``, ``chat``, ``voice``),
plus the phrases (``reasons``, ``outcomes``, ``greeting``) they use. A text with an
unknown placeholder stops the service at start, naming message and placeholder, because
a customer must never receive ``{custmer_name}``.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

__all__ = [
    "KINDS",
    "PLACEHOLDERS",
    "STYLES",
    "RenderedMessage",
    "TemplateCatalog",
    "TemplateError",
    "duration_phrase",
    "opening_phrase",
    "validate_language",
]

#: The message tables every language must have: one per notification kind, plus
#: ``queue_position_no_estimate``, the wording of a "queue_position" notice when the
#: router has no estimate (nobody logged in could take the contact). ``outside_hours``
#: says when work resumes (``{opens}``: :func:`opening_phrase`).
KINDS = (
    "outside_hours",
    "hold_started",
    "pause_started",
    "pause_overrun",
    "resumed",
    "queue_position",
    "queue_position_no_estimate",
    "callback_offer",
    "no_agent_available",
    "closed",
)
STYLES = ("sms", "email_subject", "email", "chat", "voice")
PLACEHOLDERS = frozenset(
    {"greeting", "name", "reason", "duration", "position", "wait", "outcome", "opens"}
)
REASONS = (
    "checking_information",
    "waiting_for_specialist",
    "awaiting_customer",
    "waiting_for_third_party",
    "technical_issue",
    "unspecified",
)
OUTCOMES = ("resolved", "unresolved", "no_reply", "duplicate", "callback_scheduled")


class TemplateError(Exception):
    """A template document is missing, malformed, incomplete or uses an unknown placeholder."""


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    subject: str
    body: str


def _plural_slavic(n: int, one: str, few: str, many: str) -> str:
    """Russian and Polish plural categories (CLDR): 1 / 2-4 / 5+ with the teens as many."""
    if n % 10 == 1 and n % 100 != 11:
        return one
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return few
    return many


def _plural_pl(n: int, one: str, few: str, many: str) -> str:
    """Polish: only exactly 1 is singular (21 minut, not 21 minuta)."""
    if n == 1:
        return one
    return _plural_slavic(n, many, few, many) if n % 10 == 1 else _plural_slavic(n, one, few, many)


_UNITS = {
    "en": (("minute", "minutes"), ("hour", "hours"), ("less than a minute",)),
    "ru": (("минута", "минуты", "минут"), ("час", "часа", "часов"), ("меньше минуты",)),
    "pl": (("minuta", "minuty", "minut"), ("godzina", "godziny", "godzin"), ("mniej niż minuta",)),
}


def duration_phrase(seconds: float, language: str) -> str:
    """``125`` s -> "2 minutes" / "2 минуты" / "2 minuty"; hours past 90 minutes."""
    minutes_words, hours_words, under = _UNITS.get(language, _UNITS["en"])
    minutes = round(seconds / 60)
    if minutes < 1:
        return under[0]
    if minutes >= 90:
        n, words = round(minutes / 60), hours_words
    else:
        n, words = minutes, minutes_words
    if language == "ru":
        word = _plural_slavic(n, *words)
    elif language == "pl":
        word = _plural_pl(n, *words)
    else:
        word = words[0] if n == 1 else words[1]
    return f"{n} {word}"


#: Weekdays (Monday first) with the preposition "on <day>" takes, and months in the form
#: a date takes ("4 January", "4 stycznia", "4 января").
_WEEKDAYS = {
    "en": (
        "on Monday",
        "on Tuesday",
        "on Wednesday",
        "on Thursday",
        "on Friday",
        "on Saturday",
        "on Sunday",
    ),
    "pl": (
        "w poniedziałek",
        "we wtorek",
        "w środę",
        "w czwartek",
        "w piątek",
        "w sobotę",
        "w niedzielę",
    ),
    "ru": (
        "в понедельник",
        "во вторник",
        "в среду",
        "в четверг",
        "в пятницу",
        "в субботу",
        "в воскресенье",
    ),
}
_MONTHS = {
    "en": (
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ),
    "pl": (
        "stycznia",
        "lutego",
        "marca",
        "kwietnia",
        "maja",
        "czerwca",
        "lipca",
        "sierpnia",
        "września",
        "października",
        "listopada",
        "grudnia",
    ),
    "ru": (
        "января",
        "февраля",
        "марта",
        "апреля",
        "мая",
        "июня",
        "июля",
        "августа",
        "сентября",
        "октября",
        "ноября",
        "декабря",
    ),
}
_AT = {"en": "at", "pl": "o", "ru": "в"}


def opening_phrase(at: float, zone: ZoneInfo, language: str) -> str:
    """When work resumes, as the customer reads it, in the tenant's time zone:
    "on Monday 4 January at 08:00 (CET)" / "w poniedziałek 4 stycznia o 08:00 (CET)" /
    "в понедельник 4 января в 08:00 (CET)"."""
    lang = language if language in _WEEKDAYS else "en"
    local = datetime.fromtimestamp(at, zone)
    zone_name = local.tzname() or zone.key
    return (
        f"{_WEEKDAYS[lang][local.weekday()]} {local.day} {_MONTHS[lang][local.month - 1]} "
        f"{_AT[lang]} {local:%H:%M} ({zone_name})"
    )


@dataclass(frozen=True)
class TemplateCatalog:
    """All languages' templates; ``render`` fills one for a customer."""

    languages: Mapping[str, Mapping[str, Mapping[str, str]]]
    fallback: str = "en"

    def __post_init__(self) -> None:
        if self.fallback not in self.languages:
            raise TemplateError(f"no templates for {self.fallback!r}, the fallback language")

    def render(
        self,
        kind: str,
        style: str,
        language: str,
        *,
        name: str = "",
        reason: str = "unspecified",
        outcome: str = "resolved",
        duration_s: float = 0,
        wait_s: float = 0,
        position: int = 0,
        opens_at: float = 0.0,
        zone: ZoneInfo | None = None,
    ) -> RenderedMessage:
        lang = language if language in self.languages else self.fallback
        table = self.languages[lang]
        greeting = (
            table["greeting"]["named"].format(name=name) if name else table["greeting"]["anonymous"]
        )
        values = {
            "greeting": greeting,
            "name": name,
            "reason": table["reasons"].get(reason, table["reasons"]["unspecified"]),
            "outcome": table["outcomes"].get(outcome, table["outcomes"]["resolved"]),
            "duration": duration_phrase(duration_s, lang),
            "wait": duration_phrase(wait_s, lang),
            "position": str(position),
            "opens": "" if zone is None else opening_phrase(opens_at, zone, lang),
        }
        body_style = "email" if style == "email" else style
        subject = table[kind]["email_subject"].format(**values) if style == "email" else ""
        return RenderedMessage(subject=subject, body=table[kind][body_style].format(**values))


def validate_language(data: Mapping[str, object]) -> dict[str, dict[str, str]]:
    """One language's parsed document, checked complete and using known placeholders only;
    a :class:`TemplateError` names the table, the key and the unknown placeholder."""
    out: dict[str, dict[str, str]] = {}
    required = {"greeting": ("named", "anonymous"), "reasons": REASONS, "outcomes": OUTCOMES}
    required.update(dict.fromkeys(KINDS, STYLES))
    for section, keys in required.items():
        table = data.get(section)
        if not isinstance(table, Mapping):
            raise TemplateError(f"missing table [{section}]")
        texts: dict[str, str] = {}
        for key in keys:
            text = table.get(key)
            if not isinstance(text, str) or not text.strip():
                raise TemplateError(f"[{section}] {key} is missing or empty")
            for _, field, _, _ in string.Formatter().parse(text):
                if field is not None and field not in PLACEHOLDERS:
                    raise TemplateError(f"[{section}] {key} uses unknown placeholder {{{field}}}")
            texts[key] = text
        out[section] = texts
    return out
