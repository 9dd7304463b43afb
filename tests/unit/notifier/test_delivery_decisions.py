"""What a failed delivery leads to, decided by the pure core (no gateway, fake time)."""

from __future__ import annotations

import random

import pytest

from services.notifier.domain.core import (
    ContactArrived,
    ContactPaused,
    Customer,
    NotifierCore,
    NotifierPolicy,
)
from services.notifier.domain.delivery import (
    DEAD_LETTERED,
    REJECTED,
    RETRY,
    NextStep,
    RetryPolicy,
)
from tests.unit.notifier.test_notifier_core import CATALOG, SMS, T0


def core_with_one_pending(retry: RetryPolicy) -> tuple[NotifierCore, str]:
    core = NotifierCore(NotifierPolicy(), CATALOG, retry)
    core.apply(ContactArrived("c1", SMS, Customer("cust-1", "Anna")), "e0", T0)
    [note] = core.apply(ContactPaused("c1", "technical_issue", 60, hold=True), "e1", T0)
    core.take_changes()
    return core, note.notification_id


def test_a_transient_failure_is_retried_after_a_backoff_the_core_records_and_persists() -> None:
    core, nid = core_with_one_pending(RetryPolicy(base_s=1.0, cap_s=8.0))
    attempt = core.delivery_failed(nid, "UNAVAILABLE", "UNAVAILABLE: down", T0, random.Random(3))
    assert attempt is not None
    assert attempt.step.outcome == RETRY
    assert T0 <= attempt.step.retry_at <= T0 + 1.0
    assert core.due(attempt.step.retry_at - 0.0001) == []
    [pending] = core.due(attempt.step.retry_at)
    assert (pending.attempts, pending.first_attempt_at) == (1, T0)
    stored = core.take_changes()[f"pending:{nid}"]
    assert stored is not None
    assert stored["next_attempt_at"] == attempt.step.retry_at
    assert stored["last_error"] == "UNAVAILABLE: down"


def test_the_same_failure_with_the_same_jitter_gives_the_same_retry_time() -> None:
    times = []
    for _ in range(2):
        core, nid = core_with_one_pending(RetryPolicy())
        attempt = core.delivery_failed(nid, "UNAVAILABLE", "x", T0, random.Random(9))
        assert attempt is not None
        times.append(attempt.step.retry_at)
    assert times[0] == times[1]


@pytest.mark.parametrize("status", ["INVALID_ARGUMENT", "FAILED_PRECONDITION", "NOT_FOUND"])
def test_a_permanent_failure_is_rejected_at_once_and_settled(status: str) -> None:
    core, nid = core_with_one_pending(RetryPolicy())
    attempt = core.delivery_failed(nid, status, f"{status}: no", T0, random.Random(1))
    assert attempt is not None
    assert attempt.step == NextStep(REJECTED)
    assert (attempt.pending.attempts, attempt.pending.last_error) == (1, f"{status}: no")
    assert core.outcome(nid) == REJECTED
    assert core.due(T0 + 1_000) == []


def test_the_attempt_budget_runs_out_into_a_dead_letter() -> None:
    core, nid = core_with_one_pending(RetryPolicy(max_attempts=3))
    rng = random.Random(1)
    outcomes = []
    for n in range(3):
        attempt = core.delivery_failed(nid, "UNAVAILABLE", f"try {n}", T0 + n, rng)
        assert attempt is not None
        outcomes.append(attempt.step.outcome)
    assert outcomes == [RETRY, RETRY, DEAD_LETTERED]
    assert attempt.pending.attempts == 3
    assert attempt.pending.last_error == "try 2"
    assert core.outcome(nid) == DEAD_LETTERED
    assert core.delivery_failed(nid, "UNAVAILABLE", "late", T0 + 9, rng) is None


def test_the_time_budget_counts_from_the_first_attempt() -> None:
    core, nid = core_with_one_pending(RetryPolicy(max_attempts=100, budget_s=30))
    rng = random.Random(1)
    first = core.delivery_failed(nid, "DEADLINE_EXCEEDED", "slow", T0 + 5, rng)
    assert first is not None
    assert first.step.outcome == RETRY
    second = core.delivery_failed(nid, "DEADLINE_EXCEEDED", "slow", T0 + 34, rng)
    assert second is not None
    assert second.step.outcome == RETRY  # 29 s after the first attempt
    third = core.delivery_failed(nid, "DEADLINE_EXCEEDED", "slow", T0 + 35, rng)
    assert third is not None
    assert third.step.outcome == DEAD_LETTERED


def test_postponing_is_not_an_attempt_but_is_persisted() -> None:
    core, nid = core_with_one_pending(RetryPolicy())
    core.postpone(nid, T0 + 5)
    assert core.due(T0 + 4) == []
    [pending] = core.due(T0 + 5)
    assert pending.attempts == 0
    stored = core.take_changes()[f"pending:{nid}"]
    assert stored is not None
    assert stored["next_attempt_at"] == T0 + 5
