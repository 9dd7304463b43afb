"""Delivery rules, pure: what a failed attempt leads to (retry after backoff, rejected,
dead-lettered), and when to stop calling a gateway (circuit breaker). The worker calls
the gateway; the core applies :meth:`RetryPolicy.after_failure` to each failure."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import IntEnum

__all__ = [
    "DEAD_LETTERED",
    "DELIVERED",
    "REJECTED",
    "RETRY",
    "SUPPRESSED",
    "CircuitBreaker",
    "CircuitState",
    "NextStep",
    "RetryPolicy",
    "is_retryable",
]

#: Final outcomes of a notification (as persisted and as ``DeliveryOutcome`` names them).
DELIVERED = "delivered"
REJECTED = "rejected"
DEAD_LETTERED = "dead_lettered"
#: Decided, never sent: the domain's policy held it back (rate limit, quiet hours).
SUPPRESSED = "suppressed"
#: Not final: the notification is tried again.
RETRY = "retry"

#: gRPC status names worth another try: the gateway may recover.
RETRYABLE = frozenset(
    {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "INTERNAL", "UNKNOWN"}
)


def is_retryable(status_name: str) -> bool:
    """INVALID_ARGUMENT, FAILED_PRECONDITION, PERMISSION_DENIED... will fail the same way again."""
    return status_name in RETRYABLE


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter, within an attempt and a time budget."""

    base_s: float = 0.2
    cap_s: float = 10.0
    max_attempts: int = 6
    budget_s: float = 120.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Delay before the next try after ``attempt`` tries: uniform(0, min(cap, base*2^(n-1)))."""
        return rng.uniform(0.0, min(self.cap_s, self.base_s * 2 ** (attempt - 1)))

    def gives_up(self, attempts: int, first_attempt_at: float, now: float) -> bool:
        return attempts >= self.max_attempts or now - first_attempt_at >= self.budget_s

    def after_failure(
        self, status: str, attempts: int, first_attempt_at: float, now: float, rng: random.Random
    ) -> NextStep:
        """What the ``attempts``-th failed attempt (first made at ``first_attempt_at``)
        leads to: a status that fails the same way again is REJECTED; past the attempt or
        time budget it is DEAD_LETTERED; otherwise it is retried after :meth:`backoff`."""
        if not is_retryable(status):
            return NextStep(REJECTED)
        if self.gives_up(attempts, first_attempt_at, now):
            return NextStep(DEAD_LETTERED)
        return NextStep(RETRY, now + self.backoff(attempts, rng))


@dataclass(frozen=True, slots=True)
class NextStep:
    """What follows a failed attempt: ``RETRY`` at ``retry_at``, or a final outcome."""

    outcome: str
    retry_at: float = 0.0


class CircuitState(IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass
class CircuitBreaker:
    """Stops calling a failing gateway for ``open_s``, then lets one trial call through."""

    failure_threshold: int = 5
    open_s: float = 10.0
    state: CircuitState = CircuitState.CLOSED
    failures: int = 0
    opened_at: float = 0.0
    _trial_out: bool = field(default=False)

    def allows(self, now: float) -> bool:
        if self.state == CircuitState.OPEN and now - self.opened_at >= self.open_s:
            self.state, self._trial_out = CircuitState.HALF_OPEN, False
        if self.state == CircuitState.HALF_OPEN:
            if self._trial_out:
                return False
            self._trial_out = True
            return True
        return self.state == CircuitState.CLOSED

    def succeeded(self) -> None:
        self.state, self.failures, self._trial_out = CircuitState.CLOSED, 0, False

    def failed(self, now: float) -> None:
        self.failures += 1
        if self.state == CircuitState.HALF_OPEN or self.failures >= self.failure_threshold:
            self.state, self.opened_at, self._trial_out = CircuitState.OPEN, now, False
