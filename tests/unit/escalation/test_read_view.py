"""The read view every instance answers Watch and ListOpen from: it holds what the
compacted ``escalations`` topic holds (latest record per escalation, resolved ones until
their tombstone), filters as ListOpen does, and refuses one escalation too many."""

from __future__ import annotations

from dataclasses import replace

import pytest

from services.escalation.domain import (
    EscalationChange,
    EscalationChangeKind,
    EscalationReason,
    EscalationStatus,
    ManagerRequested,
    Tier,
)
from services.escalation.domain.read_view import EscalationReadView, ReadViewFull
from tests.unit.escalation.scenario import T0, arrive, make_core

K = EscalationChangeKind


def changes_of(
    domain: str, contact_id: str, queue: str = "billing-en", at: float = T0
) -> list[EscalationChange]:
    core = make_core(domain, triggers={"enabled": ["manager_requested"]})
    arrive(core, contact_id, at, queue=queue)
    return core.apply(ManagerRequested(contact_id), at)


def fed(view: EscalationReadView, changes: list[EscalationChange]) -> list[EscalationChange]:
    streamed = []
    for change in changes:
        out = view.apply(change.escalation.escalation_id, change)
        if out is not None:
            streamed.append(out)
    return streamed


def test_every_domains_escalations_are_listed_for_the_teams_asked_oldest_first() -> None:
    view = EscalationReadView()
    fed(view, changes_of("eu", "c2", at=T0))
    fed(view, changes_of("us", "c1", queue="sales-en", at=T0 + 1))
    fed(view, changes_of("acme", "c3", at=T0 + 2))
    billing = view.open_for({"billing"})
    assert [(e.domain, e.contact_id) for e in billing] == [("eu", "c2"), ("acme", "c3")]
    assert [e.domain for e in view.open_for({"billing", "sales"})] == ["eu", "us", "acme"]
    assert view.open_for({"support"}) == []


def test_the_latest_record_is_the_state_and_a_resolved_one_stays_until_its_tombstone() -> None:
    view = EscalationReadView()
    (raised,) = changes_of("eu", "c1")
    esc = raised.escalation
    acked = replace(esc, status=EscalationStatus.ACKNOWLEDGED, version=esc.version + 1)
    resolved = replace(acked, status=EscalationStatus.RESOLVED, version=esc.version + 2)
    streamed = fed(
        view,
        [raised, EscalationChange(K.ACKNOWLEDGED, acked), EscalationChange(K.RESOLVED, resolved)],
    )
    assert [c.kind for c in streamed] == [K.RAISED, K.ACKNOWLEDGED, K.RESOLVED]
    assert view.get(esc.escalation_id) == resolved  # resolved: still known (commands answer it)
    assert view.open_for({"billing"}) == []  # but no longer listed
    assert view.has_version(esc.escalation_id, resolved.version)
    assert not view.has_version(esc.escalation_id, resolved.version + 1)
    assert view.apply(esc.escalation_id, None) is None  # tombstone: nothing to stream
    assert view.get(esc.escalation_id) is None
    assert len(view) == 0


def test_list_filters_by_tier_and_reason() -> None:
    view = EscalationReadView()
    (raised,) = changes_of("eu", "c1")
    up = replace(raised.escalation, escalation_id="eu/c9/unroutable", tier=Tier.MANAGER)
    fed(view, [raised, EscalationChange(K.RAISED, up)])
    assert [e.escalation_id for e in view.open_for({"billing"}, tier=Tier.MANAGER)] == [
        "eu/c9/unroutable"
    ]
    reason = EscalationReason.MANAGER_REQUESTED
    assert len(view.open_for({"billing"}, reason=reason)) == 2
    assert view.open_for({"billing"}, reason=EscalationReason.UNRESOLVED) == []


def test_one_escalation_too_many_is_refused_and_the_view_says_it_is_incomplete() -> None:
    view = EscalationReadView(max_escalations=2)
    fed(view, changes_of("eu", "c1"))
    fed(view, changes_of("eu", "c2"))
    (third,) = changes_of("eu", "c3")
    with pytest.raises(ReadViewFull, match=r"view\.max_escalations"):
        view.apply(third.escalation.escalation_id, third)
    assert not view.complete
    assert view.get(third.escalation.escalation_id) is None
    # a change of an escalation already held still applies
    (again,) = changes_of("eu", "c1")
    assert view.apply(again.escalation.escalation_id, again) is again
    assert len(view) == 2
