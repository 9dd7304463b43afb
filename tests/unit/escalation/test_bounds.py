"""Bounds: a customer id shared by thousands of contacts ("anonymous") keeps a history of
at most MAX_REPEAT_CONTACTS arrivals, and its summaries stay short."""

from __future__ import annotations

import json

import pytest

from services.escalation.domain import (
    EscalationReason,
    InvalidArgument,
    ManagerRequested,
    PolicyError,
)
from services.escalation.domain.core import MAX_NOTES
from services.escalation.domain.policy import MAX_REPEAT_CONTACTS
from tests.unit.escalation.scenario import T0, arrive, make_core, make_policy


def test_a_shared_customer_id_keeps_a_bounded_history_and_a_short_summary() -> None:
    core = make_core(triggers={"enabled": ["repeat_contact"], "repeat_contacts": 3})
    for n in range(3_000):
        arrive(core, f"c{n}", T0 + n, customer_id="anonymous")
    history = core.snapshot()["customer/anonymous"]
    assert len(history["arrivals"]) == MAX_REPEAT_CONTACTS
    assert len(json.dumps(history)) < 10_000
    [repeat] = [e for e in core.escalations() if e.reason is EscalationReason.REPEAT_CONTACT]
    assert repeat.summary.startswith(f"{MAX_REPEAT_CONTACTS}+ contacts from customer anonymous")
    assert repeat.summary.count(", ") == 9  # the latest ten contact ids, not all of them
    assert repeat.summary.endswith("c2999")


def test_a_repeat_threshold_above_the_kept_history_is_refused() -> None:
    with pytest.raises(PolicyError, match=f"repeat_contacts: must be <= {MAX_REPEAT_CONTACTS}"):
        make_policy(triggers={"repeat_contacts": MAX_REPEAT_CONTACTS + 1})


def test_an_escalation_keeps_at_most_max_notes() -> None:
    core = make_core(triggers={"enabled": ["manager_requested"]})
    arrive(core, "c1", T0)
    core.apply(ManagerRequested("c1"), T0)
    escalation_id = core.escalations()[0].escalation_id
    for n in range(MAX_NOTES):
        core.add_note(escalation_id, "sofia", f"note {n}", T0 + n)
    with pytest.raises(InvalidArgument, match=f"already has {MAX_NOTES} notes"):
        core.add_note(escalation_id, "sofia", "one more", T0 + MAX_NOTES)
    assert len(core.get(escalation_id).notes) == MAX_NOTES  # type: ignore[union-attr]
