"""The per-domain dedupe window and oversized records: pure parts of the shared runtime."""

from __future__ import annotations

import pytest

from services.common.errors import RejectedEvent
from services.common.kafka import (
    InboundRecord,
    OutboundRecord,
    oversized_dead_letter,
    record_size,
)
from services.common.state import SEEN_CHUNK, DomainStates, EventIdWindow
from services.common.topics import Topics

DAY = 86_400.0


def test_a_window_remembers_ids_and_restores_them_from_its_changelog_chunks() -> None:
    window = EventIdWindow(max_ids=10_000, max_age_s=DAY)
    for n in range(SEEN_CHUNK + 10):
        window.add(f"e-{n}", now=100.0)
    changes = window.take_changes()
    assert sorted(changes) == ["~seen/0", "~seen/1"]  # two chunks, not one key per event
    restored = EventIdWindow.restore(10_000, DAY, {k: v for k, v in changes.items() if v})
    assert "e-0" in restored
    assert f"e-{SEEN_CHUNK + 9}" in restored
    assert "e-never" not in restored


def test_only_the_chunk_that_changed_is_written_again() -> None:
    window = EventIdWindow(max_ids=10_000, max_age_s=DAY)
    for n in range(SEEN_CHUNK + 1):
        window.add(f"e-{n}", now=1.0)
    window.take_changes()
    window.add("e-late", now=2.0)
    assert list(window.take_changes()) == ["~seen/1"]
    assert window.take_changes() == {}


def test_the_window_is_bounded_by_count_and_tombstones_what_it_forgets() -> None:
    window = EventIdWindow(max_ids=2 * SEEN_CHUNK, max_age_s=DAY)
    for n in range(5 * SEEN_CHUNK):
        window.add(f"e-{n}", now=1.0)
    changes = window.take_changes()
    assert len(window) <= 2 * SEEN_CHUNK + SEEN_CHUNK
    assert "e-0" not in window
    assert f"e-{5 * SEEN_CHUNK - 1}" in window
    assert changes["~seen/0"] is None  # forgotten chunks are deleted from the changelog


def test_ids_older_than_the_age_bound_are_forgotten() -> None:
    window = EventIdWindow(max_ids=10_000, max_age_s=60.0)
    for n in range(SEEN_CHUNK):
        window.add(f"old-{n}", now=0.0)
    window.add("new-0", now=30.0)
    assert "old-0" in window  # the next chunk is not older than the bound yet
    window.add("new-1", now=100.0)
    assert "old-0" not in window
    assert "new-0" in window  # the newest chunk always stays


def test_an_oversized_output_becomes_a_dead_letter_that_fits() -> None:
    topics = Topics("t.")
    source = InboundRecord("t.contact.events", 2, 41, b"acme", b"x", (), 0)
    big = OutboundRecord("t.routing.decisions", b"v" * 2_000_000, b"acme")
    size = record_size(big)
    letter = oversized_dead_letter(topics, big, size, 1_000_000, "router", source)
    headers = dict(letter.headers)
    assert letter.topic == "t.router.dlq"  # the service's own dead letters
    assert headers["dlq.original.topic"] == b"t.routing.decisions"
    assert record_size(letter) <= 1_000_000
    assert headers["dlq.reason"].startswith(b"record too large: ")
    assert headers["dlq.original.size"] == str(size).encode()
    assert headers["dlq.source.offset"] == b"41"


def test_an_oversized_dead_letter_stays_on_its_dead_letter_topic() -> None:
    topics = Topics("")
    letter = OutboundRecord(
        "router.dlq", b"v" * 1_100_000, b"acme", headers=(("dlq.reason", b"bad json"),)
    )
    cut = oversized_dead_letter(topics, letter, record_size(letter), 1_000_000, "router")
    assert cut.topic == "router.dlq"
    assert record_size(cut) <= 1_000_000
    assert dict(cut.headers)["dlq.reason"].startswith(b"record too large")
    assert dict(cut.headers)["dlq.original.reason"] == b"bad json"


def test_past_max_domains_a_new_domain_is_refused_and_known_ones_go_on() -> None:
    states: DomainStates[dict[str, int]] = DomainStates(
        changelog_topic="t.changelog",
        new_core=lambda _domain: {},
        restore_core=lambda _domain, _facts: {},
        max_domains=2,
    )
    states.core_for("acme", 0)
    states.core_for("globex", 1)
    with pytest.raises(RejectedEvent, match="already serves 2 domains"):
        states.core_for("initech", 0)
    assert states.core_for("acme", 0) == {}
