"""The notifier core: which customer must be told what, and when. Sans-I/O.

API::

    core = NotifierCore(policy, catalog, retry)
    core.apply(event, cause_id, now) -> list[Notification]   # decided, now pending delivery
    core.tick(now) -> list[Notification]                     # follow-ups, coalesced updates
    core.next_deadline() -> float | None
    core.due(now) -> list[Pending]                           # what the delivery worker sends now
    core.settle(notification_id, now) -> Pending | None      # the gateway accepted it
    core.delivery_failed(notification_id, status, error, now, rng) -> FailedAttempt | None
    core.postpone(notification_id, at)                       # not tried (circuit open)
    core.take_changes() / core.snapshot() / NotifierCore.restore(policy, catalog, snapshots)
    core.change_policy(policy, version, now, document)        # the domain's new policy, live
    core.take_suppressed() -> list[Pending]                  # held back by the policy

What the policy holds back is not silently dropped: a queue-position notice past the rate
limit, and a notice of a kind the policy keeps quiet outside the tenant's business hours,
are settled SUPPRESSED at once (:meth:`take_suppressed`: the adapter records them on
``notifications``), never sent. A contact arriving outside business hours is told when
work resumes (``outside_hours``: the next opening, in the tenant's time zone). A held-back
position replaced by a newer one before it was due is not a notice of its own (the newer
one is told; :attr:`NotifierCore.coalesced` counts them).

A failed attempt is decided here (:meth:`RetryPolicy.after_failure`): retried after a
backoff the core records in the pending entry, REJECTED, or DEAD_LETTERED.

Exactly once: a notification id is derived from its cause (``<event id>:<kind>``); the
core remembers settled ids for ``ledger_s`` and never decides the same id twice; pending
ones are part of the persisted state, so a restart resumes their delivery; the gateway
receives the id as its idempotency key, so a delivery interrupted by a crash is not
repeated there either.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from services.common.business_hours import (
    ALWAYS_OPEN,
    BusinessCalendar,
    CalendarError,
    parse_calendar,
)
from services.common.deadlines import Deadlines
from services.common.policy_document import PolicyDocumentError, policy_tables
from services.notifier.domain.channels import channel_info
from services.notifier.domain.delivery import (
    DELIVERED,
    REJECTED,
    RETRY,
    SUPPRESSED,
    NextStep,
    RetryPolicy,
)
from services.notifier.domain.errors import InvalidInput, PolicyError
from services.notifier.domain.templates import KINDS, TemplateCatalog

__all__ = [
    "ContactAbandoned",
    "ContactArrived",
    "ContactAssigned",
    "ContactClosed",
    "ContactEnded",
    "ContactPaused",
    "ContactResumed",
    "ContactUnroutable",
    "Customer",
    "CustomerErased",
    "DirectRequest",
    "FailedAttempt",
    "Notification",
    "NotifierCore",
    "NotifierPolicy",
    "Pending",
    "QueuePositionUpdated",
    "policy_in_document",
    "stored_policy",
]

#: What a policy may keep quiet outside business hours: every notice but the outside-hours
#: notice itself, closing notices and direct requests (someone asked for those).
QUIETABLE = frozenset(KINDS) - {"outside_hours", "queue_position_no_estimate", "closed"}


@dataclass(frozen=True, slots=True)
class NotifierPolicy:
    """When to speak up, and when to keep quiet (notifier.toml's ``[policy]``, a domain's
    ``[notification]``)::

        position_min_interval_s = 60    # numbers: seconds, or a count
        ...
        quiet_outside_hours = ["queue_position", "callback_offer"]
        [business_hours]                # the tenant's hours: the shared calendar format
        timezone = "Europe/Warsaw"      # (services/common/business_hours.py); left out:
        holidays = ["2026-12-24"]       # always open, no outside-hours notice
        [business_hours.hours]
        mon = "08:00-18:00"
    """

    position_min_interval_s: float = 60.0
    callback_offer_after_s: float = 300.0
    overrun_grace_s: float = 30.0
    rate_limit_count: int = 6
    rate_limit_window_s: float = 600.0
    ledger_s: float = 86_400.0
    #: The tenant's opening hours: outside them a new contact is told when work resumes.
    business_hours: BusinessCalendar = ALWAYS_OPEN
    #: Kinds not sent outside business hours (settled SUPPRESSED): a place in line or a
    #: callback offer would promise a wait the closed center cannot keep.
    quiet_outside_hours: frozenset[str] = frozenset({"queue_position", "callback_offer"})

    def is_open(self, at: float) -> bool:
        return self.business_hours.is_open(at)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NotifierPolicy:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise PolicyError(f"{sorted(unknown)[0]}: unknown field")
        values: dict[str, Any] = {}
        for name, value in data.items():
            if name == "business_hours":
                try:
                    values[name] = parse_calendar(name, value, name)
                except CalendarError as exc:
                    raise PolicyError(exc.reason) from None
                continue
            if name == "quiet_outside_hours":
                values[name] = _kinds(name, value)
                continue
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise PolicyError(f"{name}: must be a number")
            try:
                number = float(value)
            except ValueError:
                raise PolicyError(f"{name}: must be a number, got {value!r}") from None
            if number <= 0:
                raise PolicyError(f"{name}: must be > 0")
            values[name] = int(number) if name == "rate_limit_count" else number
        return cls(**values)


def _kinds(name: str, value: object) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyError(f"{name}: expected a list of notification kinds")
    unknown = sorted(set(value) - QUIETABLE)
    if unknown:
        raise PolicyError(
            f"{name}: {unknown[0]!r} cannot be kept quiet (one of {', '.join(sorted(QUIETABLE))})"
        )
    return frozenset(value)


def policy_in_document(document: str, default: NotifierPolicy) -> NotifierPolicy:
    """The policy a domain's policy document (``policy.proto``) gives the notifier: its
    ``[notification]`` table, read as notifier.toml's ``[policy]``, or ``default`` (the
    configured one) when it has none. Raises :class:`PolicyError` naming the field."""
    try:
        table = policy_tables(document).get("notification")
    except PolicyDocumentError as exc:
        raise PolicyError(exc.reason) from None
    if table is None:
        return default
    try:
        return NotifierPolicy.from_dict(table)
    except PolicyError as exc:
        raise PolicyError(f"notification.{exc.reason}") from None


@dataclass(frozen=True, slots=True)
class Customer:
    customer_id: str = ""
    name: str = ""
    phone: str = ""
    email: str = ""
    language: str = "en"


# ------------------------------------------------------------------ inputs


@dataclass(frozen=True, slots=True)
class ContactArrived:
    contact_id: str
    channel: int
    customer: Customer


@dataclass(frozen=True, slots=True)
class ContactPaused:
    """A voice hold (``hold=True``) or a paused chat/ticket."""

    contact_id: str
    reason: str
    expected_s: float
    hold: bool


@dataclass(frozen=True, slots=True)
class ContactResumed:
    contact_id: str


@dataclass(frozen=True, slots=True)
class ContactEnded:
    contact_id: str
    outcome: str  # resolved | unresolved | no_reply | duplicate | callback_scheduled


@dataclass(frozen=True, slots=True)
class ContactAbandoned:
    contact_id: str


@dataclass(frozen=True, slots=True)
class QueuePositionUpdated:
    contact_id: str
    position: int
    #: ``None``: the router has no estimate (nobody logged in could take the contact);
    #: the customer is told their place and that there is no estimate, never "0 s".
    wait_s: float | None


@dataclass(frozen=True, slots=True)
class ContactAssigned:
    contact_id: str


@dataclass(frozen=True, slots=True)
class ContactUnroutable:
    contact_id: str


@dataclass(frozen=True, slots=True)
class ContactClosed:
    contact_id: str


@dataclass(frozen=True, slots=True)
class DirectRequest:
    request_id: str
    contact_id: str
    channel: int
    customer: Customer
    text: str


@dataclass(frozen=True, slots=True)
class CustomerErased:
    """Erase this customer's personal data (a data subject's request)."""

    customer_id: str


Input = (
    ContactArrived
    | CustomerErased
    | ContactPaused
    | ContactResumed
    | ContactEnded
    | ContactAbandoned
    | QueuePositionUpdated
    | ContactAssigned
    | ContactUnroutable
    | ContactClosed
    | DirectRequest
)


def _refuse_unwordable(event: Input) -> None:
    """Refuse what no message can be worded from (a template renders durations), before
    the core changes anything: a refused event must leave no half-made pause behind."""
    if isinstance(event, ContactPaused) and not math.isfinite(event.expected_s):
        raise InvalidInput(f"expected_s: must be finite, got {event.expected_s}")
    if (
        isinstance(event, QueuePositionUpdated)
        and event.wait_s is not None
        and not math.isfinite(event.wait_s)
    ):
        raise InvalidInput(f"wait_s: must be finite, got {event.wait_s}")


# ------------------------------------------------------------------ outputs


@dataclass(frozen=True, slots=True)
class Notification:
    notification_id: str
    contact_id: str
    kind: str
    channel: int
    language: str
    customer: Customer
    subject: str
    body: str
    created_at: float


@dataclass
class Pending:
    """A decided notification and its delivery progress (persisted with the core)."""

    notification: Notification
    attempts: int = 0
    next_attempt_at: float = 0.0
    first_attempt_at: float = 0.0
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class FailedAttempt:
    """What :meth:`NotifierCore.delivery_failed` decided, and the entry it applies to
    (settled and no longer pending when ``step`` is final)."""

    step: NextStep
    pending: Pending


#: ``_Contact.deferred_wait_s`` of a held-back position without an estimate (a value, not
#: a new field, so the previous version still reads the snapshot; waits are never < 0).
_NO_ESTIMATE = -1.0
#: The template of a queue-position notice without an estimate (the kind stays
#: "queue_position").
_POSITION_NO_ESTIMATE = "queue_position_no_estimate"

#: The changelog entity holding the domain's policy version and document.
_POLICY_KEY = "policy:current"

#: Timer kinds, keyed ``(kind, contact id)``: at most one of each per contact.
_OVERRUN = "overrun"
_POSITION = "position"


@dataclass
class _Contact:
    """What the core remembers of one contact (persisted as is: field names are the
    changelog's schema)."""

    channel: int
    customer: Customer
    #: "hold_started" or "pause_started" while paused, else "".
    pause_kind: str = ""
    pause_reason: str = ""
    pause_expected_s: float = 0.0
    pause_until: float = 0.0
    #: The event id that started the pause; its overrun notice is ``<id>:late``.
    pause_cause: str = ""
    overrun_sent: bool = False
    #: The last queue position told, and when.
    position_sent_at: float = 0.0
    position_sent: int = 0
    #: The latest position held back by ``position_min_interval_s`` (0: none).
    deferred_position: int = 0
    deferred_wait_s: float = 0.0
    deferred_cause: str = ""
    callback_offered: bool = False
    unroutable_told: bool = False
    #: Closed with a notice: forgotten once its last pending notification settles.
    ended: bool = False
    #: When queue positions were told, within ``rate_limit_window_s`` (the rate limit).
    recent: list[float] = field(default_factory=list)


class NotifierCore:
    """Notification decisions for one routing domain."""

    def __init__(
        self,
        policy: NotifierPolicy,
        catalog: TemplateCatalog,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.policy = policy
        self.catalog = catalog
        self.retry = retry or RetryPolicy()
        #: The version of the domain's policy in force (0: the configured default) and its
        #: document, persisted (entity ``policy:current``) so a restore runs on it.
        self.policy_version = 0
        self.policy_document = ""
        self._contacts: dict[str, _Contact] = {}
        self._pending: dict[str, Pending] = {}
        # oldest first, so expiry looks only at the front (not every id, every tick)
        self._settled: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._timers: Deadlines[tuple[str, str]] = Deadlines()
        self._dirty: set[str] = set()
        #: Held-back position updates replaced by a newer one before they were told.
        self.coalesced = 0
        #: Position notices not decided because of the per-contact rate limit.
        self.rate_limited = 0
        self._erased: list[Pending] = []
        self._suppressed: list[Pending] = []

    # ------------------------------------------------------------------ decisions

    def apply(self, event: Input, cause_id: str, now: float) -> list[Notification]:
        """Decide what ``event`` tells the customer; wholly or not at all: an unusable
        event raises :class:`~services.notifier.domain.errors.InvalidInput` before
        anything changes. Events of contacts never seen (or closed) are ignored."""
        _refuse_unwordable(event)
        out: list[Notification] = []
        if isinstance(event, CustomerErased):
            if not event.customer_id:
                raise InvalidInput("customer_id: empty")
            self._erase(event.customer_id, now)
            return out
        if isinstance(event, ContactArrived):
            if event.contact_id not in self._contacts:
                arrived = self._contacts[event.contact_id] = _Contact(event.channel, event.customer)
                self._dirty.add(f"contact:{event.contact_id}")
                self._tell_if_closed(out, cause_id, event.contact_id, arrived, now)
            return out
        if isinstance(event, DirectRequest):
            direct = self._contacts.get(event.contact_id) or _Contact(event.channel, event.customer)
            self._decide_once(
                out, cause_id, "direct", event.contact_id, direct, now, body=event.text
            )
            return out
        contact = self._contacts.get(event.contact_id)
        if contact is None:
            return out  # never saw it arrive (or already closed): nothing to say
        self._dirty.add(f"contact:{event.contact_id}")
        if isinstance(event, ContactPaused):
            contact.pause_kind = "hold_started" if event.hold else "pause_started"
            contact.pause_reason = event.reason
            contact.pause_expected_s = event.expected_s
            contact.pause_until = now + event.expected_s
            contact.pause_cause = cause_id
            contact.overrun_sent = False
            self._decide_once(
                out,
                cause_id,
                contact.pause_kind,
                event.contact_id,
                contact,
                now,
                reason=event.reason,
                duration_s=event.expected_s,
            )
            self._timers.set(
                (_OVERRUN, event.contact_id), contact.pause_until + self.policy.overrun_grace_s
            )
        elif isinstance(event, ContactResumed):
            if contact.pause_kind:
                contact.pause_kind = ""
                self._decide_once(out, cause_id, "resumed", event.contact_id, contact, now)
        elif isinstance(event, QueuePositionUpdated):
            self._on_position_update(out, cause_id, event, contact, now)
        elif isinstance(event, ContactAssigned):
            contact.deferred_position = 0
        elif isinstance(event, ContactUnroutable):
            if not contact.unroutable_told:
                contact.unroutable_told = True
                self._decide_once(
                    out, cause_id, "no_agent_available", event.contact_id, contact, now
                )
        elif isinstance(event, ContactEnded):
            contact.ended = True
            contact.pause_kind = ""
            self._decide_once(
                out, cause_id, "closed", event.contact_id, contact, now, outcome=event.outcome
            )
        elif isinstance(event, ContactAbandoned | ContactClosed):
            self._forget(event.contact_id)
        return out

    def _tell_if_closed(
        self, out: list[Notification], cause_id: str, contact_id: str, contact: _Contact, now: float
    ) -> None:
        """Outside the tenant's business hours, say when work resumes (its next opening,
        in its time zone); nothing if it never opens again (no hours ahead at all)."""
        hours = self.policy.business_hours
        if hours.is_open(now):
            return
        opens = hours.next_open(now)
        if opens is None:
            return
        self._decide_once(
            out,
            cause_id,
            "outside_hours",
            contact_id,
            contact,
            now,
            opens_at=opens,
            zone=hours.zone,
        )

    def _on_position_update(
        self,
        out: list[Notification],
        cause_id: str,
        event: QueuePositionUpdated,
        contact: _Contact,
        now: float,
    ) -> None:
        """A long wait gets one callback offer; a new position is told at once, or held
        back (the latest one kept) until ``position_min_interval_s`` has passed since the
        last one told."""
        if (
            event.wait_s is not None  # no estimate: no "the wait is about ..." either
            and event.wait_s >= self.policy.callback_offer_after_s
            and not contact.callback_offered
        ):
            contact.callback_offered = True
            self._decide_once(
                out, cause_id, "callback_offer", event.contact_id, contact, now, wait_s=event.wait_s
            )
            return
        if event.position == contact.position_sent:
            return
        if now - contact.position_sent_at < self.policy.position_min_interval_s:
            if contact.deferred_position:
                self.coalesced += 1  # the held-back update is replaced by this one
            contact.deferred_position = event.position
            contact.deferred_wait_s = _NO_ESTIMATE if event.wait_s is None else event.wait_s
            contact.deferred_cause = cause_id
            self._timers.set(
                (_POSITION, event.contact_id),
                contact.position_sent_at + self.policy.position_min_interval_s,
            )
            return
        self._tell_position_unless_limited(
            out, cause_id, event.contact_id, contact, event.position, event.wait_s, now
        )

    def _tell_position_unless_limited(
        self,
        out: list[Notification],
        cause_id: str,
        contact_id: str,
        contact: _Contact,
        position: int,
        wait_s: float | None,
        now: float,
    ) -> None:
        """Decide a queue-position notice, unless the contact had ``rate_limit_count``
        of them within ``rate_limit_window_s``; without an estimate (``wait_s`` None) it
        is worded by the ``queue_position_no_estimate`` template."""
        window = self.policy.rate_limit_window_s
        contact.recent = [t for t in contact.recent if now - t < window]
        limited = len(contact.recent) >= self.policy.rate_limit_count
        if limited:
            self.rate_limited += 1
        elif not self._quiet("queue_position", now):  # a quiet one does not count
            contact.recent.append(now)
        if not limited:
            contact.position_sent, contact.position_sent_at = position, now
            contact.deferred_position = 0
        values: dict[str, Any] = {"position": position}
        if wait_s is None:
            values["template"] = _POSITION_NO_ESTIMATE
        else:
            values["wait_s"] = wait_s
        self._decide_once(
            out, cause_id, "queue_position", contact_id, contact, now, suppress=limited, **values
        )

    def tick(self, now: float) -> list[Notification]:
        """Fire the timers due at ``now`` (pause overruns, deferred position updates) and
        forget settled ids older than ``ledger_s``."""
        out: list[Notification] = []
        while (due := self._timers.pop_due(now)) is not None:
            _, (kind, contact_id) = due
            contact = self._contacts.get(contact_id)
            if contact is None:
                continue
            if kind == _OVERRUN:
                if (
                    contact.pause_kind
                    and not contact.overrun_sent
                    and now >= contact.pause_until + self.policy.overrun_grace_s
                ):
                    contact.overrun_sent = True
                    self._dirty.add(f"contact:{contact_id}")
                    self._decide_once(
                        out,
                        f"{contact.pause_cause}:late",
                        "pause_overrun",
                        contact_id,
                        contact,
                        now,
                        duration_s=contact.pause_expected_s,
                    )
            elif (
                kind == _POSITION
                and contact.deferred_position
                and now - contact.position_sent_at >= self.policy.position_min_interval_s
            ):
                self._dirty.add(f"contact:{contact_id}")
                self._tell_position_unless_limited(
                    out,
                    contact.deferred_cause,
                    contact_id,
                    contact,
                    contact.deferred_position,
                    None if contact.deferred_wait_s == _NO_ESTIMATE else contact.deferred_wait_s,
                    now,
                )
        while self._settled:
            nid, (at, _) = next(iter(self._settled.items()))
            if now - at <= self.policy.ledger_s:
                break
            del self._settled[nid]
            self._dirty.add(f"sent:{nid}")
        return out

    def next_deadline(self) -> float | None:
        return self._timers.next()

    @property
    def scheduled_timers(self) -> int:
        """Timers waiting to fire: at most one overrun and one position timer per contact."""
        return len(self._timers)

    def _forget(self, contact_id: str) -> None:
        """Drop the contact and its timers."""
        del self._contacts[contact_id]
        self._timers.cancel((_OVERRUN, contact_id))
        self._timers.cancel((_POSITION, contact_id))

    def _decide_once(
        self,
        out: list[Notification],
        cause_id: str,
        kind: str,
        contact_id: str,
        contact: _Contact,
        now: float,
        *,
        body: str = "",
        template: str = "",
        suppress: bool = False,
        **values: Any,
    ) -> None:
        """Word a ``kind`` notice (with the ``template`` of that name, by default the
        kind's) for the contact and add it to the pending set, unless
        ``<cause_id>:<kind>`` was decided before (a replayed event). One the policy holds
        back (``suppress``, or a quiet kind outside business hours) is settled SUPPRESSED
        instead, for :meth:`take_suppressed`, and never sent."""
        notification_id = f"{cause_id}:{kind}"
        if notification_id in self._settled or notification_id in self._pending:
            return  # decided before (a replayed event): never twice
        style = channel_info(contact.channel).style
        language = contact.customer.language or "en"
        if kind == "direct":
            subject, text = "", body
        else:
            message = self.catalog.render(
                template or kind, style, language, name=contact.customer.name, **values
            )
            subject, text = message.subject, message.body
        note = Notification(
            notification_id,
            contact_id,
            kind,
            contact.channel,
            language,
            contact.customer,
            subject,
            text,
            now,
        )
        if suppress or self._quiet(kind, now):
            self._settled[notification_id] = (now, SUPPRESSED)
            self._dirty.add(f"sent:{notification_id}")
            self._suppressed.append(Pending(note, next_attempt_at=now))
            return
        self._pending[notification_id] = Pending(note, next_attempt_at=now)
        self._dirty.add(f"pending:{notification_id}")
        out.append(note)

    def _quiet(self, kind: str, now: float) -> bool:
        """Whether the policy keeps ``kind`` quiet at ``now`` (outside business hours)."""
        return kind in self.policy.quiet_outside_hours and not self.policy.is_open(now)

    def take_suppressed(self) -> list[Pending]:
        """Notices the policy held back since the last call (settled SUPPRESSED: their
        outcome records go on ``notifications``)."""
        suppressed, self._suppressed = self._suppressed, []
        return suppressed

    # ------------------------------------------------------------------ the domain's policy

    def change_policy(
        self, policy: NotifierPolicy, version: int, now: float, document: str = ""
    ) -> list[Notification]:
        """Run the domain on ``policy`` (its ``version`` and ``document``) from ``now`` on.

        Timers already due fire first, under the old policy; the rest are re-armed with the
        new intervals, from the moments they count from (a pause's promised end, the last
        position told), never earlier than ``now``. The caller refuses versions not newer
        than :attr:`policy_version`.
        """
        out = self.tick(now)
        self.policy, self.policy_version, self.policy_document = policy, version, document
        self._dirty.add(_POLICY_KEY)
        for contact_id, contact in self._contacts.items():
            self._arm_timers(contact_id, contact, earliest=now)
        out.extend(self.tick(now))
        return out

    def _arm_timers(self, contact_id: str, contact: _Contact, earliest: float = 0.0) -> None:
        if contact.pause_kind and not contact.overrun_sent:
            self._timers.set(
                (_OVERRUN, contact_id),
                max(earliest, contact.pause_until + self.policy.overrun_grace_s),
            )
        if contact.deferred_position:
            self._timers.set(
                (_POSITION, contact_id),
                max(earliest, contact.position_sent_at + self.policy.position_min_interval_s),
            )

    # ------------------------------------------------------------------ delivery bookkeeping

    def _erase(self, customer_id: str, now: float) -> None:
        """Remove the customer's details from every contact; their notifications not yet
        delivered are settled REJECTED (:meth:`take_erased`): nothing is sent to them."""
        for contact_id, contact in self._contacts.items():
            if contact.customer.customer_id == customer_id:
                contact.customer = Customer(language=contact.customer.language)
                self._dirty.add(f"contact:{contact_id}")
        for nid, pending in list(self._pending.items()):
            if pending.notification.customer.customer_id == customer_id:
                settled = self.settle(nid, now, "customer data erased on request", REJECTED)
                if settled is not None:
                    self._erased.append(settled)

    def take_erased(self) -> list[Pending]:
        """Notifications an erasure settled since the last call (their outcome records)."""
        erased, self._erased = self._erased, []
        return erased

    def due(self, now: float) -> list[Pending]:
        """Pending notifications whose next attempt is due at ``now``."""
        return [p for p in self._pending.values() if p.next_attempt_at <= now]

    def pending(self, notification_id: str) -> Pending | None:
        return self._pending.get(notification_id)

    def is_settled(self, notification_id: str) -> bool:
        return notification_id in self._settled

    def outcome(self, notification_id: str) -> str | None:
        """'pending', the settled outcome, or None if unknown (or forgotten)."""
        if notification_id in self._pending:
            return "pending"
        settled = self._settled.get(notification_id)
        return settled[1] if settled else None

    def delivery_failed(
        self, notification_id: str, status: str, error: str, now: float, rng: random.Random
    ) -> FailedAttempt | None:
        """An attempt failed with gRPC ``status``: settle it (REJECTED, DEAD_LETTERED) or
        count it and schedule the next attempt after a backoff (jitter drawn from ``rng``).
        None if not pending."""
        pending = self._pending.get(notification_id)
        if pending is None:
            return None
        first_attempt_at = pending.first_attempt_at or now
        step = self.retry.after_failure(status, pending.attempts + 1, first_attempt_at, now, rng)
        if step.outcome != RETRY:
            settled = self.settle(notification_id, now, error, step.outcome)
            return None if settled is None else FailedAttempt(step, settled)
        pending.attempts += 1
        pending.first_attempt_at = first_attempt_at
        pending.next_attempt_at = step.retry_at
        pending.last_error = error
        self._dirty.add(f"pending:{notification_id}")
        return FailedAttempt(step, pending)

    def postpone(self, notification_id: str, at: float) -> None:
        """Not attempted (the gateway's circuit is open): try again at ``at``, uncounted."""
        pending = self._pending.get(notification_id)
        if pending is not None:
            pending.next_attempt_at = at
            self._dirty.add(f"pending:{notification_id}")

    def settle(
        self, notification_id: str, now: float, error: str = "", outcome: str = DELIVERED
    ) -> Pending | None:
        """Final outcome reached (by default: the gateway accepted it): forget the pending
        entry, remember the id and its outcome for ``ledger_s``."""
        pending = self._pending.pop(notification_id, None)
        if pending is None:
            return None
        pending.attempts += 1
        pending.last_error = error or pending.last_error
        self._settled[notification_id] = (now, outcome)
        self._dirty.update({f"pending:{notification_id}", f"sent:{notification_id}"})
        contact = self._contacts.get(pending.notification.contact_id)
        if (
            contact is not None
            and contact.ended
            and not any(
                p.notification.contact_id == pending.notification.contact_id
                for p in self._pending.values()
            )
        ):
            self._forget(pending.notification.contact_id)
            self._dirty.add(f"contact:{pending.notification.contact_id}")
        return pending

    # ------------------------------------------------------------------ persistence

    def take_changes(self) -> dict[str, dict[str, Any] | None]:
        """Snapshots of every entity changed since the last call (``None`` = deleted)."""
        changes = {key: self._entity(key) for key in self._dirty}
        self._dirty.clear()
        return changes

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every entity, as :meth:`take_changes` would write them (for checks and tests)."""
        keys = [
            *(f"contact:{c}" for c in self._contacts),
            *(f"pending:{n}" for n in self._pending),
            *(f"sent:{n}" for n in self._settled),
            *([_POLICY_KEY] if self.policy_version else []),
        ]
        return {key: entity for key in keys if (entity := self._entity(key)) is not None}

    def _entity(self, key: str) -> dict[str, Any] | None:
        if key == _POLICY_KEY:
            return {"version": self.policy_version, "document": self.policy_document}
        kind, _, ident = key.partition(":")
        if kind == "contact":
            contact = self._contacts.get(ident)
            return asdict(contact) if contact else None
        if kind == "pending":
            pending = self._pending.get(ident)
            return asdict(pending) if pending else None
        settled = self._settled.get(ident)
        return {"at": settled[0], "outcome": settled[1]} if settled else None

    @classmethod
    def restore(
        cls,
        policy: NotifierPolicy,
        catalog: TemplateCatalog,
        snapshots: Mapping[str, Any],
        retry: RetryPolicy | None = None,
        *,
        version: int = 0,
        document: str = "",
    ) -> NotifierCore:
        """The core :meth:`snapshot` (or the changelog's latest entities) describes, its
        timers rescheduled, under the domain's ``policy`` (its ``version`` and
        ``document``: :func:`stored_policy` reads them from the snapshots)."""
        core = cls(policy, catalog, retry)
        core.policy_version, core.policy_document = version, document
        for key, snap in snapshots.items():
            kind, _, ident = key.partition(":")
            if snap is None:
                continue
            if kind == "contact":
                snap = dict(snap)
                snap["customer"] = Customer(**snap["customer"])
                contact = _Contact(**snap)
                core._contacts[ident] = contact
                core._arm_timers(ident, contact)
            elif kind == "pending":
                note = dict(snap["notification"])
                note["customer"] = Customer(**note["customer"])
                core._pending[ident] = Pending(
                    notification=Notification(**note),
                    attempts=snap["attempts"],
                    next_attempt_at=snap["next_attempt_at"],
                    first_attempt_at=snap["first_attempt_at"],
                    last_error=snap["last_error"],
                )
            elif kind == "sent":
                core._settled[ident] = (snap["at"], snap.get("outcome", "delivered"))
        core._settled = OrderedDict(sorted(core._settled.items(), key=lambda kv: kv[1][0]))
        return core


def stored_policy(snapshots: Mapping[str, Any]) -> tuple[int, str]:
    """The policy version and document a domain's changelog holds ((0, ""): the default;
    an unreadable entry reads as the default too, and the caller says so)."""
    stored = snapshots.get(_POLICY_KEY)
    if not isinstance(stored, Mapping):
        return 0, ""
    version, document = stored.get("version"), stored.get("document")
    if isinstance(version, bool) or not isinstance(version, int) or not isinstance(document, str):
        return 0, ""
    return version, document
