"""Protobuf <-> notifier-core dataclasses."""

from __future__ import annotations

from switchboard.v1 import common_pb2, contact_events_pb2, notification_pb2
from switchboard.v1.envelope_pb2 import Envelope

from services.common import contract
from services.common.codec import set_timestamp
from services.notifier.domain import core as n

__all__ = ["KIND_NUMBERS", "OUTCOMES", "envelope_to_input", "to_proto"]

#: Every known PauseReason and Disposition (the contract refuses the rest), as the
#: templates name them; a test checks that none is missing.
_REASONS: dict[int, str] = {
    contact_events_pb2.PAUSE_REASON_CHECKING_INFORMATION: "checking_information",
    contact_events_pb2.PAUSE_REASON_WAITING_FOR_SPECIALIST: "waiting_for_specialist",
    contact_events_pb2.PAUSE_REASON_AWAITING_CUSTOMER: "awaiting_customer",
    contact_events_pb2.PAUSE_REASON_WAITING_FOR_THIRD_PARTY: "waiting_for_third_party",
    contact_events_pb2.PAUSE_REASON_TECHNICAL_ISSUE: "technical_issue",
}
_DISPOSITIONS: dict[int, str] = {
    contact_events_pb2.DISPOSITION_RESOLVED: "resolved",
    contact_events_pb2.DISPOSITION_UNRESOLVED: "unresolved",
    contact_events_pb2.DISPOSITION_NO_REPLY: "no_reply",
    contact_events_pb2.DISPOSITION_DUPLICATE: "duplicate",
    contact_events_pb2.DISPOSITION_CALLBACK_SCHEDULED: "callback_scheduled",
}
KIND_NUMBERS = {
    "hold_started": notification_pb2.NOTIFICATION_KIND_HOLD_STARTED,
    "pause_started": notification_pb2.NOTIFICATION_KIND_PAUSE_STARTED,
    "pause_overrun": notification_pb2.NOTIFICATION_KIND_PAUSE_OVERRUN,
    "resumed": notification_pb2.NOTIFICATION_KIND_RESUMED,
    "queue_position": notification_pb2.NOTIFICATION_KIND_QUEUE_POSITION,
    "callback_offer": notification_pb2.NOTIFICATION_KIND_CALLBACK_OFFER,
    "outside_hours": notification_pb2.NOTIFICATION_KIND_OUTSIDE_HOURS,
    "no_agent_available": notification_pb2.NOTIFICATION_KIND_NO_AGENT_AVAILABLE,
    "closed": notification_pb2.NOTIFICATION_KIND_CLOSED,
    "direct": notification_pb2.NOTIFICATION_KIND_DIRECT,
}
OUTCOMES = {
    "delivered": notification_pb2.DELIVERY_OUTCOME_DELIVERED,
    "dead_lettered": notification_pb2.DELIVERY_OUTCOME_DEAD_LETTERED,
    "rejected": notification_pb2.DELIVERY_OUTCOME_REJECTED,
    "suppressed": notification_pb2.DELIVERY_OUTCOME_SUPPRESSED,
    "pending": notification_pb2.DELIVERY_OUTCOME_PENDING,
}


def customer_from(proto: common_pb2.Customer) -> n.Customer:
    return n.Customer(
        proto.customer_id, proto.name, proto.phone, proto.email, proto.language or "en"
    )


def envelope_to_input(envelope: Envelope) -> n.Input | None:
    """The core input for an envelope, ``None`` for events that say nothing to a customer.

    Every field is read with :mod:`services.common.contract`, as the router and
    escalation read it.
    """
    kind = envelope.WhichOneof("payload")
    if kind == "customer_erasure_requested":
        return n.CustomerErased(contract.erased_customer(envelope.customer_erasure_requested))
    if kind == "contact_arrived":
        e = envelope.contact_arrived
        arrival = contract.contact_arrived(e)
        customer = customer_from(e.customer)
        if not customer.language or customer.language == "en":
            customer = n.Customer(
                customer.customer_id,
                customer.name,
                customer.phone,
                customer.email,
                e.language or customer.language or "en",
            )
        return n.ContactArrived(arrival.contact_id, arrival.channel, customer)
    if kind == "contact_held" or kind == "contact_paused":
        p = contract.pause(
            envelope.contact_held if kind == "contact_held" else envelope.contact_paused, kind
        )
        return n.ContactPaused(
            p.contact_id, _REASONS[p.reason], p.expected_s, kind == "contact_held"
        )
    if kind == "contact_resumed":
        return n.ContactResumed(
            contract.required(envelope.contact_resumed.contact_id, f"{kind}.contact_id")
        )
    if kind == "contact_ended":
        e2 = envelope.contact_ended
        return n.ContactEnded(
            contract.required(e2.contact_id, f"{kind}.contact_id"),
            _DISPOSITIONS[contract.disposition(e2.disposition, f"{kind}.disposition")],
        )
    if kind == "contact_abandoned":
        return n.ContactAbandoned(
            contract.required(envelope.contact_abandoned.contact_id, f"{kind}.contact_id")
        )
    if kind == "queue_position_updated":
        q = envelope.queue_position_updated
        return n.QueuePositionUpdated(
            contract.required(q.contact_id, f"{kind}.contact_id"),
            q.position,
            # no estimate (nobody logged in could take the contact): never read it as 0 s
            None
            if q.estimated_wait_unknown
            else contract.duration_s(q.estimated_wait, f"{kind}.estimated_wait"),
        )
    if kind == "contact_assigned":
        return n.ContactAssigned(
            contract.required(envelope.contact_assigned.contact_id, f"{kind}.contact_id")
        )
    if kind == "contact_unroutable":
        return n.ContactUnroutable(
            contract.required(envelope.contact_unroutable.contact_id, f"{kind}.contact_id")
        )
    if kind == "contact_closed":
        return n.ContactClosed(
            contract.required(envelope.contact_closed.contact_id, f"{kind}.contact_id")
        )
    return None  # other events say nothing to the customer


def to_proto(note: n.Notification) -> notification_pb2.Notification:
    proto = notification_pb2.Notification(
        notification_id=note.notification_id,
        contact_id=note.contact_id,
        channel=common_pb2.Channel.ValueType(note.channel),
        kind=KIND_NUMBERS[note.kind],
        language=note.language,
        subject=note.subject,
        body=note.body,
        customer=common_pb2.Customer(
            customer_id=note.customer.customer_id,
            name=note.customer.name,
            phone=note.customer.phone,
            email=note.customer.email,
            language=note.customer.language,
        ),
    )
    set_timestamp(proto.created_at, note.created_at)
    return proto
