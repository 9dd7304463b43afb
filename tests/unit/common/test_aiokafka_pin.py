"""The consume loop leans on aiokafka internals; an upgrade that moves them must fail here,
not silently undo a measured latency gain or the fencing detection."""

from __future__ import annotations

import inspect
from importlib.metadata import version

from aiokafka.producer import sender, transaction_manager


def test_aiokafka_is_the_version_the_loop_was_measured_with() -> None:
    assert version("aiokafka") == "0.14.0"


def test_the_sender_still_reads_the_concurrent_transactions_retry_override() -> None:
    """make_transactional_producer sets sender.BACKOFF_OVERRIDE (2 ms instead of 20 ms)."""
    assert isinstance(sender.BACKOFF_OVERRIDE, float)
    assert "return BACKOFF_OVERRIDE" in inspect.getsource(sender)


def test_a_fenced_producer_is_still_recognisable_by_its_transaction_manager() -> None:
    """The loop's _is_fenced falls back on the manager's fatal state."""
    assert callable(transaction_manager.TransactionManager.is_fatal_error)
