"""Shared scenario helpers for the escalation core's tests: a small policy and a desk."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from services.escalation.domain import (
    ContactArrived,
    Customer,
    EscalationChange,
    EscalationChangeKind,
    EscalationCore,
    EscalationPolicy,
    EscalationReason,
    Priority,
)

#: Monday 6 January 2025, 09:00 UTC.
T0 = datetime(2025, 1, 6, 9, 0, tzinfo=UTC).timestamp()
MIN = 60.0
HOUR = 3600.0

BASE: dict[str, Any] = {
    "manager": "mira",
    "head_of_service": "hugo",
    "retain_closed_s": 0,
    "ack_deadlines_s": {"supervisor": 600, "manager": 1200, "head_of_service": 1800},
    "triggers": {
        "wait_threshold_s": 300,
        "repeat_contacts": 3,
        "repeat_window_s": 86400,
        "low_score": 2,
    },
    "teams": {
        "billing": {"supervisor": "sofia"},
        "sales": {"supervisor": "sam", "manager": "max"},
    },
    "queues": {
        "billing-en": {"team": "billing"},
        "sales-en": {"team": "sales"},
        "tickets": {
            "team": "billing",
            "triggers": {"sla_clock": "resolution", "wait_threshold_s": 3600},
        },
    },
}


def merged(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def make_policy(**overrides: Any) -> EscalationPolicy:
    return EscalationPolicy.from_dict(merged(BASE, overrides))


def make_core(domain: str = "eu", **overrides: Any) -> EscalationCore:
    return EscalationCore(make_policy(**overrides), domain)


def arrive(
    core: EscalationCore,
    contact_id: str,
    at: float,
    *,
    queue: str = "billing-en",
    customer_id: str = "",
    vip: bool = False,
    reopened: bool = False,
) -> list[EscalationChange]:
    customer = Customer(customer_id=customer_id, name="Anna")
    priority = Priority.VIP if vip else Priority.NORMAL
    return core.apply(ContactArrived(contact_id, queue, customer, priority, reopened=reopened), at)


def kinds(changes: list[EscalationChange]) -> list[tuple[str, str]]:
    """``[("raised", "wait_threshold"), ...]``: what happened, readable in an assert."""
    return [(c.kind.slug, c.escalation.reason.slug) for c in changes]


def only(changes: list[EscalationChange], kind: EscalationChangeKind) -> EscalationChange:
    matching = [c for c in changes if c.kind is kind]
    assert len(matching) == 1, changes
    return matching[0]


def eid(contact_id: str, reason: EscalationReason, domain: str = "eu") -> str:
    return f"{domain}/{contact_id}/{reason.slug}"
