"""What the escalation core remembers between events: one case per contact, one contact
history per customer. Their changelog form is in :mod:`.snapshots`."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from services.escalation.domain.model import Customer, Disposition, PauseReason, Priority
from services.escalation.domain.sla_clock import SlaStopwatch

__all__ = ["Case", "History", "Pause", "Phase"]


class Phase(Enum):
    WAITING = "waiting"  # in line for an agent
    ASSIGNED = "assigned"  # an agent has it
    DONE = "done"  # ended, closed or abandoned; kept a while for late surveys and reopens


@dataclass(slots=True)
class Pause:
    kind: str  # "hold" | "pause"
    reason: PauseReason
    started_at: float
    promised_s: float


@dataclass(slots=True)
class Case:
    """One contact (the changelog entity ``case/<contact_id>``)."""

    contact_id: str
    queue: str
    customer: Customer
    priority: Priority
    arrived_at: float
    last_seen: float
    phase: Phase = Phase.WAITING
    #: False while only routing decisions were seen (they can overtake the arrival).
    seen_arrival: bool = True
    disposition: Disposition | None = None
    closed_at: float | None = None
    sla: SlaStopwatch = field(default_factory=SlaStopwatch)
    pause: Pause | None = None
    #: How often each reason's evidence was seen (named in the summary).
    evidence: dict[str, int] = field(default_factory=dict)

    @property
    def awaiting_customer(self) -> bool:
        return self.pause is not None and self.pause.reason is PauseReason.AWAITING_CUSTOMER


@dataclass(slots=True)
class History:
    """A customer's recent contacts (the changelog entity ``customer/<customer_id>``)."""

    customer_id: str
    #: ``(arrived_at, contact_id)``, oldest first.
    arrivals: list[tuple[float, str]] = field(default_factory=list)
    #: The open REPEAT_CONTACT escalation later contacts add evidence to.
    repeat_escalation: str | None = None
