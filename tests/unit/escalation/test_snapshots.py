"""Changelog records: what an earlier version wrote must restore unchanged and mean the same."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from services.escalation.domain import EscalationCore, EscalationReason
from services.escalation.domain.snapshots import (
    case_from_record,
    case_record,
    history_from_record,
    history_record,
)
from tests.unit.escalation.scenario import kinds, make_policy

#: ``EscalationCore.snapshot()`` as written by the core before its snapshot code and SLA
#: clock moved to their own modules (commit 07efc42): a running and a stopped SLA clock,
#: a pause, counted evidence, a closed case and two customer histories.
BEFORE_SPLIT: dict[str, dict[str, Any]] = json.loads(
    (Path(__file__).parent / "snapshot_before_split.json").read_text()
)


def test_records_written_before_the_split_restore_unchanged() -> None:
    core = EscalationCore.restore(make_policy(), "eu", [], BEFORE_SPLIT)
    assert core.snapshot() == BEFORE_SPLIT
    assert core.take_changes() == {}, "restoring rewrote records nothing changed"


@pytest.mark.parametrize("key", sorted(BEFORE_SPLIT))
def test_each_record_reads_back_to_the_same_record(key: str) -> None:
    data = BEFORE_SPLIT[key]
    if key.startswith("case/"):
        assert case_record(case_from_record(data)) == data
    else:
        assert history_record(history_from_record(data)) == data


def test_a_restored_sla_clock_keeps_its_banked_time() -> None:
    """c1 banked 60 s and restarted at ``sla_since`` on the 3600 s tickets threshold, so it
    breaches 3540 s later, not 3600 s later and not at once."""
    core = EscalationCore.restore(make_policy(), "eu", [], BEFORE_SPLIT)
    case = BEFORE_SPLIT["case/c1"]
    breach = case["sla_since"] + 3600 - case["sla_accum_s"]
    assert ("raised", "wait_threshold") not in kinds(core.tick(breach - 1))
    raised = [
        c for c in core.tick(breach) if c.escalation.reason is EscalationReason.WAIT_THRESHOLD
    ]
    assert [(c.escalation.contact_id, c.escalation.raised_at) for c in raised] == [("c1", breach)]


def test_a_record_missing_a_field_is_left_out_and_named() -> None:
    broken = {k: v for k, v in BEFORE_SPLIT["case/c1"].items() if k != "sla_accum_s"}
    restored = EscalationCore.restore(make_policy(), "eu", [], {"case/c1": broken})
    assert restored.snapshot() == {}
    [problem] = restored.restore_problems
    assert problem.startswith("case/c1: unreadable (KeyError")
    assert "sla_accum_s" in problem
