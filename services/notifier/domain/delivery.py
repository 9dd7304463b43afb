"""Delivery policy, pure: which errors to retry, how long to back off, when to stop trying
a gateway (circuit breaker). The adapter makes the gRPC calls; this decides around them."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import IntEnum

__all__ = ["CircuitBreaker", "CircuitState", "RetryPolicy", "is_retryable"]

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
