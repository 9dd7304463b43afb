"""What the consume loop retries, and how its producers are tuned (pure decisions; no broker)."""

from __future__ import annotations

import pytest
from aiokafka.errors import (
    ConcurrentTransactions,
    CoordinatorNotAvailableError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaTimeoutError,
    NotEnoughReplicasError,
    RecordTooLargeError,
    UnsupportedVersionError,
)
from aiokafka.producer import sender

from services.common.config import KafkaSettings
from services.common.kafka import (
    CONCURRENT_TRANSACTIONS_RETRY_S,
    RETRY_BACKOFF_MS,
    make_transactional_producer,
    transient,
)


@pytest.mark.parametrize(
    "error",
    [
        ConcurrentTransactions(),
        CoordinatorNotAvailableError(),
        NotEnoughReplicasError(),
        KafkaConnectionError(),
        KafkaTimeoutError(),  # the client gave up on a broker that is away
    ],
)
def test_a_broker_that_is_away_or_busy_is_worth_another_transaction(error: Exception) -> None:
    assert transient(error)


@pytest.mark.parametrize(
    "error",
    [
        IllegalStateError(),
        RecordTooLargeError(),
        UnsupportedVersionError(),
        ValueError("a bug of ours"),
    ],
)
def test_a_permanent_error_stops_the_loop_instead_of_spinning(error: Exception) -> None:
    assert not transient(error)


async def test_transactional_producers_retry_concurrent_transactions_after_2_ms() -> None:
    """Regression for 97e846c: back-to-back transactions waited aiokafka's fixed 20 ms."""
    sender.BACKOFF_OVERRIDE = None
    producer = make_transactional_producer(KafkaSettings(), "t-0")  # not started: no I/O
    try:
        assert sender.BACKOFF_OVERRIDE == CONCURRENT_TRANSACTIONS_RETRY_S == 0.002
        assert producer._sender._retry_backoff == RETRY_BACKOFF_MS / 1000
    finally:
        await producer.stop()
