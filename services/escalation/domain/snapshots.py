"""The escalation core's case facts as changelog records (JSON-ready dicts), and back.

Entities are keyed ``case/<contact_id>`` and ``customer/<customer_id>``. The record
layout is the changelog's contract: a record already in a changelog must read back
unchanged (``tests/unit/escalation/test_snapshots.py`` holds one written before this module).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.escalation.domain.cases import Case, History, Pause, Phase
from services.escalation.domain.model import Customer, Disposition, PauseReason, Priority
from services.escalation.domain.sla_clock import SlaStopwatch

__all__ = [
    "case_from_record",
    "case_key",
    "case_record",
    "customer_key",
    "history_from_record",
    "history_record",
    "read_case_facts",
]


def case_key(contact_id: str) -> str:
    return f"case/{contact_id}"


def customer_key(customer_id: str) -> str:
    return f"customer/{customer_id}"


def case_record(case: Case) -> dict[str, Any]:
    pause = case.pause
    return {
        "contact_id": case.contact_id,
        "queue": case.queue,
        "customer": _customer_record(case.customer),
        "priority": case.priority.slug,
        "arrived_at": case.arrived_at,
        "last_seen": case.last_seen,
        "phase": case.phase.value,
        "seen_arrival": case.seen_arrival,
        "disposition": None if case.disposition is None else case.disposition.slug,
        "closed_at": case.closed_at,
        "sla_accum_s": case.sla.banked_s,
        "sla_since": case.sla.since,
        "pause": None
        if pause is None
        else {
            "kind": pause.kind,
            "reason": pause.reason.slug,
            "started_at": pause.started_at,
            "promised_s": pause.promised_s,
        },
        "evidence": dict(case.evidence),
    }


def case_from_record(data: Mapping[str, Any]) -> Case:
    pause = data["pause"]
    disposition = data["disposition"]
    return Case(
        contact_id=data["contact_id"],
        queue=data["queue"],
        customer=Customer(**data["customer"]),
        priority=Priority[data["priority"].upper()],
        arrived_at=float(data["arrived_at"]),
        last_seen=float(data["last_seen"]),
        phase=Phase(data["phase"]),
        seen_arrival=bool(data["seen_arrival"]),
        disposition=None if disposition is None else Disposition[disposition.upper()],
        closed_at=data["closed_at"],
        sla=SlaStopwatch(banked_s=float(data["sla_accum_s"]), since=data["sla_since"]),
        pause=None
        if pause is None
        else Pause(
            kind=pause["kind"],
            reason=PauseReason[pause["reason"].upper()],
            started_at=float(pause["started_at"]),
            promised_s=float(pause["promised_s"]),
        ),
        evidence={str(k): int(v) for k, v in data["evidence"].items()},
    )


def history_record(history: History) -> dict[str, Any]:
    return {
        "customer_id": history.customer_id,
        "arrivals": [[at, contact_id] for at, contact_id in history.arrivals],
        "repeat_escalation": history.repeat_escalation,
    }


def history_from_record(data: Mapping[str, Any]) -> History:
    return History(
        customer_id=data["customer_id"],
        arrivals=[(float(at), str(contact_id)) for at, contact_id in data["arrivals"]],
        repeat_escalation=data["repeat_escalation"],
    )


def read_case_facts(
    case_facts: Mapping[str, Mapping[str, Any]], queues: Mapping[str, object]
) -> tuple[dict[str, Case], dict[str, History], list[str]]:
    """Cases and histories by id from changelog records, and one line per record left
    out: unreadable, of an unknown kind, or of a queue not in ``queues`` (stored state
    never stops a restore; the caller reports what was left out)."""
    cases: dict[str, Case] = {}
    customers: dict[str, History] = {}
    left_out: list[str] = []
    for key, data in case_facts.items():
        kind, _, ident = key.partition("/")
        try:
            if kind == "case":
                case = case_from_record(data)
                if case.queue not in queues:
                    left_out.append(f"{key}: queue {case.queue!r} is no longer configured")
                    continue
                cases[ident] = case
            elif kind == "customer":
                customers[ident] = history_from_record(data)
            else:
                left_out.append(f"{key}: unknown entity")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            left_out.append(f"{key}: unreadable ({type(exc).__name__}: {exc})")
    return cases, customers, left_out


def _customer_record(customer: Customer) -> dict[str, str]:
    return {
        "customer_id": customer.customer_id,
        "name": customer.name,
        "phone": customer.phone,
        "email": customer.email,
        "language": customer.language,
    }
