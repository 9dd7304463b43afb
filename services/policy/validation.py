"""Is a policy document valid? Each table read by the real parser of the service that
applies it, so what is accepted here is exactly what the services accept. Pure.

    [routing]       RoutingPolicy.from_dict            (the router)
    [escalation]    EscalationPolicy.from_dict         (the escalation service's settings)
    [notification]  NotifierPolicy.from_dict           (the notifier's settings)

Every problem is one line naming the field from the document's top, e.g.
``routing.queues.billing-en.service_level_s: must be >= 0``. A parser stops at its first
problem, so a document gets at most one line per table (plus none for the others).
"""

from __future__ import annotations

from dataclasses import dataclass

from services.common.policy_document import PolicyDocumentError, policy_tables
from services.escalation.domain import EscalationPolicy
from services.escalation.domain import PolicyError as EscalationPolicyError
from services.notifier.domain.core import NotifierPolicy
from services.notifier.domain.errors import PolicyError as NotifierPolicyError
from services.router.domain import PolicyError as RoutingPolicyError
from services.router.domain import RoutingPolicy

__all__ = ["InvalidPolicy", "ParsedPolicy", "document_problems", "parse_document"]


@dataclass(frozen=True, slots=True)
class ParsedPolicy:
    """A valid document's tables as the services read them (None: the table is left
    out, and the service's configured default applies)."""

    routing: RoutingPolicy | None = None
    escalation: EscalationPolicy | None = None
    notification: NotifierPolicy | None = None


class InvalidPolicy(Exception):
    """The document is refused; ``problems`` name the fields (one line each)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


#: A parser meeting a value of a shape it does not expect (e.g. ``capacity = 5``, not a
#: table) may raise one of these rather than its PolicyError; still a refusal, named.
_SHAPE_ERRORS = (TypeError, ValueError, AttributeError, KeyError)


def parse_document(document: str) -> ParsedPolicy:
    """The document's tables, parsed, or :class:`InvalidPolicy` with every problem."""
    try:
        tables = policy_tables(document)
    except PolicyDocumentError as exc:
        raise InvalidPolicy([exc.reason]) from None
    problems: list[str] = []
    routing = escalation = notification = None
    if "routing" in tables:
        try:
            routing = RoutingPolicy.from_dict(tables["routing"])
        except RoutingPolicyError as exc:
            problems.append(f"routing.{exc.reason}")
        except _SHAPE_ERRORS as exc:
            problems.append(f"routing: cannot be read ({exc})")
    if "escalation" in tables:
        try:
            escalation = EscalationPolicy.from_dict(tables["escalation"], prefix="escalation.")
        except EscalationPolicyError as exc:
            problems.append(exc.reason)
        except _SHAPE_ERRORS as exc:
            problems.append(f"escalation: cannot be read ({exc})")
    if "notification" in tables:
        try:
            notification = NotifierPolicy.from_dict(tables["notification"])
        except NotifierPolicyError as exc:
            problems.append(f"notification.{exc.reason}")
        except _SHAPE_ERRORS as exc:
            problems.append(f"notification: cannot be read ({exc})")
    if problems:
        raise InvalidPolicy(problems)
    return ParsedPolicy(routing, escalation, notification)


def document_problems(document: str) -> list[str]:
    """What is wrong with the document (empty: valid)."""
    try:
        parse_document(document)
    except InvalidPolicy as exc:
        return exc.problems
    return []
