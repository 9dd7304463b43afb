"""`switchboard dlq`: reading, choosing, showing and planning the replay of dead letters
(pure; the dead letters are made by the services' own dead_letter_* functions)."""

from __future__ import annotations

import json

import pytest
from switchboard.v1 import common_pb2

from services.cli.dlq import (
    DeadLetter,
    Filters,
    LetterId,
    list_lines,
    plan_replay,
    replay_lines,
    show_text,
)
from services.common.codec import encode_envelope, new_envelope
from services.common.errors import ConfigError
from services.common.kafka import (
    InboundRecord,
    OutboundRecord,
    dead_letter_of_output,
    dead_letter_record,
    oversized_dead_letter,
    record_size,
)
from services.common.topics import Topics

TOPICS = Topics("p.")
NOW_MS = 1_750_000_000_000
JSON = (("content-type", b"application/json"),)
ARRIVAL = json.dumps(
    {
        "eventId": "pbx-1842",
        "domain": "acme",
        "contactArrived": {
            "contactId": "call-1842",
            "queue": "biling-en",
            "channel": "CHANNEL_VOICE",
            "customer": {"name": "Anna Nowak", "phone": "+48600123456", "email": "anna@x.pl"},
        },
    }
).encode()


def as_read(out: OutboundRecord, partition: int, offset: int, at_ms: int = NOW_MS) -> InboundRecord:
    """A produced dead letter as the command reads it back."""
    return InboundRecord(out.topic, partition, offset, out.key, out.value, out.headers, at_ms)


def letter(
    service: str = "router",
    *,
    value: bytes = ARRIVAL,
    headers: tuple[tuple[str, bytes], ...] = JSON,
    topic: str = "p.contact.events",
    source_offset: int = 41,
    at: tuple[int, int] = (2, 17),
    at_ms: int = NOW_MS,
    error: str = "rejected",
    reason: str = "queue 'biling-en' is not configured",
    event_id: str = "pbx-1842",
) -> DeadLetter:
    record = InboundRecord(topic, 3, source_offset, b"acme", value, headers, 0)
    out = dead_letter_record(TOPICS, record, reason, error, service, event_id)
    return DeadLetter.of(service, as_read(out, *at, at_ms))


def test_a_dead_letter_is_named_by_service_partition_and_offset() -> None:
    assert LetterId.parse("router:2:17") == LetterId("router", 2, 17)
    assert str(LetterId("notifier", 0, 3)) == "notifier:0:3"
    for bad in ("router:2", "gateway:1:2", "router:x:1", "router:1:-2", "r" * 200):
        with pytest.raises(ConfigError, match="SERVICE:PARTITION:OFFSET"):
            LetterId.parse(bad)


def test_a_dead_letter_says_why_which_event_and_where_from() -> None:
    d = letter()
    assert (d.id, d.topic) == (LetterId("router", 2, 17), "p.router.dlq")
    assert (d.error, d.reason, d.event_id) == (
        "rejected",
        "queue 'biling-en' is not configured",
        "pbx-1842",
    )
    assert d.source == ("p.contact.events", 3, 41)
    assert d.origin == "p.contact.events/3@41"
    assert d.original_headers() == JSON


def test_an_output_a_service_gave_up_on_says_where_it_was_going() -> None:
    out = OutboundRecord("p.notifications", b"note", b"c1")
    dead = dead_letter_of_output(TOPICS, out, "UNAVAILABLE", "undeliverable", "notifier", "n1")
    d = DeadLetter.of("notifier", as_read(dead, 0, 0))
    assert d.topic == "p.notifier.dlq"
    assert (d.origin, d.topic_of_origin) == ("p.notifications (output)", "p.notifications")


def test_list_counts_per_service_and_topic_and_shows_the_newest_first() -> None:
    letters = [
        letter(at=(0, 1), at_ms=NOW_MS, event_id="e1"),
        letter(at=(1, 5), at_ms=NOW_MS + 2000, event_id="e3"),
        letter(at=(0, 2), at_ms=NOW_MS + 1000, event_id="e2"),
        letter("escalation", at=(0, 1), error="decode", reason="invalid JSON", event_id=""),
        letter(topic="p.agent.events", at=(3, 1), event_id="e9"),
    ]
    lines = list_lines(letters, limit=2, unread=["p.notifier.dlq"])
    assert lines == [
        "p.router.dlq from p.agent.events: 1 dead letter",
        "  router:3:1  2025-06-15 15:06:40Z  router  p.agent.events/3@41  e9  rejected  "
        "queue 'biling-en' is not configured",
        "p.router.dlq from p.contact.events: 3 dead letters, the newest 2 below",
        "  router:1:5  2025-06-15 15:06:42Z  router  p.contact.events/3@41  e3  rejected  "
        "queue 'biling-en' is not configured",
        "  router:0:2  2025-06-15 15:06:41Z  router  p.contact.events/3@41  e2  rejected  "
        "queue 'biling-en' is not configured",
        "p.escalation.dlq from p.contact.events: 1 dead letter",
        "  escalation:0:1  2025-06-15 15:06:40Z  escalation  p.contact.events/3@41  -  decode  "
        "invalid JSON",
        "(p.notifier.dlq: older records were not read; raise --scan to count them)",
    ]
    assert list_lines([], limit=5) == ["no dead letters"]


def test_list_masks_phones_and_emails_in_reasons_and_cuts_long_ones() -> None:
    noisy = letter(reason="bad value '+48 600 123 456' for anna@x.pl " + "x" * 400)
    (_, line) = list_lines([noisy], limit=5)
    assert "600 123" not in line
    assert "anna@" not in line
    assert "***56" in line
    assert "a***@x.pl" in line
    assert len(line) < 500
    assert line.endswith("…")


def test_filters_choose_by_service_topic_error_and_event_id() -> None:
    d = letter()
    assert Filters().accepts(d)
    assert Filters(services=frozenset({"router"}), errors=frozenset({"rejected"})).accepts(d)
    assert Filters(
        topics=frozenset({"p.contact.events"}), event_ids=frozenset({"pbx-1842"})
    ).accepts(d)
    assert not Filters(services=frozenset({"notifier"})).accepts(d)
    assert not Filters(topics=frozenset({"p.agent.events"})).accepts(d)
    assert not Filters(errors=frozenset({"decode"})).accepts(d)
    assert not Filters(event_ids=frozenset({"other"})).accepts(d)


def test_show_decodes_a_json_envelope_and_masks_names_phones_and_emails() -> None:
    text = show_text(letter(), TOPICS)
    assert "Anna" not in text
    assert "Nowak" not in text
    assert "600123" not in text
    assert "anna@" not in text
    body = json.loads(text[text.index("{") :])
    assert body["contact_arrived"]["customer"] == {
        "name": "A***",
        "phone": "***56",
        "email": "a***@x.pl",
    }
    assert body["event_id"] == "pbx-1842"  # ids stay greppable
    assert body["contact_arrived"]["contact_id"] == "call-1842"
    assert "  reason     queue 'biling-en' is not configured" in text
    assert "  from       p.contact.events/3@41" in text
    assert "  headers    content-type=application/json" in text
    assert "  replay     to p.contact.events" in text
    assert "envelope (contact_arrived), personal details masked:" in text


def test_show_decodes_binary_protobuf_too() -> None:
    e = new_envelope("acme", "pbx", event_id="bin-1")
    e.contact_arrived.contact_id, e.contact_arrived.queue = "c1", "nope"
    e.contact_arrived.channel = common_pb2.CHANNEL_CHAT
    e.contact_arrived.customer.name = "Zofia Kowalska"
    text = show_text(letter(value=encode_envelope(e), headers=()), TOPICS)
    assert "Zofia" not in text
    assert '"name": "Z***"' in text


def test_show_masks_json_that_is_no_envelope_and_hides_binary_that_is_none() -> None:
    bad_json = b'{"eventId": "pbx-9", "colour": "red", "customer": {"name": "Anna Nowak"}}'
    text = show_text(letter(value=bad_json, error="decode", reason="invalid JSON"), TOPICS)
    assert "not an envelope: invalid JSON envelope" in text
    assert "value (JSON), personal details masked:" in text
    assert "Anna" not in text
    assert '"name": "A***"' in text
    garbage = show_text(letter(value=b"\x00\xff\x10 Anna", headers=()), TOPICS)
    assert "Anna" not in garbage
    assert "8 bytes of binary, not shown" in garbage


def test_a_replay_is_the_original_record_with_only_a_replayed_from_header() -> None:
    headers = (*JSON, ("x-trace", b"t-1"))
    replays, skipped = plan_replay(
        [letter(headers=headers)], TOPICS, now_ms=NOW_MS, dedupe_window_s=3600
    )
    assert skipped == []
    [replay] = replays
    out = replay.record
    assert (out.topic, out.key, out.value) == ("p.contact.events", b"acme", ARRIVAL)
    assert out.headers == (*headers, ("dlq.replayed-from", b"p.router.dlq/2/17"))
    assert out.partition is None  # murmur2 of the key, as the services and the Java client
    assert not replay.stale


def test_a_record_several_services_refused_is_sent_once_in_source_order() -> None:
    router_copy = letter("router", at=(0, 7))
    escalation_copy = letter("escalation", at=(1, 2))
    later = letter(source_offset=50, at=(0, 8), event_id="pbx-1843")
    replays, _ = plan_replay(
        [later, escalation_copy, router_copy], TOPICS, now_ms=NOW_MS, dedupe_window_s=3600
    )
    assert [[str(d.id) for d in r.letters] for r in replays] == [
        ["router:0:7", "escalation:1:2"],
        ["router:0:8"],
    ]
    assert dict(replays[0].record.headers)["dlq.replayed-from"] == b"p.router.dlq/0/7"


def test_what_cannot_be_replayed_is_skipped_with_the_reason() -> None:
    decision = letter(topic="p.routing.decisions")
    output = DeadLetter.of(
        "notifier",
        as_read(
            dead_letter_of_output(
                TOPICS,
                OutboundRecord("p.notifications", b"n"),
                "UNAVAILABLE",
                "undeliverable",
                "notifier",
            ),
            0,
            1,
        ),
    )
    huge = InboundRecord("p.contact.events", 0, 3, b"acme", b"v" * 1_100_000, (), 0)
    big = dead_letter_record(TOPICS, huge, "record too large", "decode", "router")
    cut = oversized_dead_letter(TOPICS, big, record_size(big), 1_000_000, "router", huge)
    truncated = DeadLetter.of("router", as_read(cut, 0, 2))
    replays, skipped = plan_replay(
        [decision, output, truncated], TOPICS, now_ms=NOW_MS, dedupe_window_s=3600
    )
    assert replays == []
    why = {str(s.letter.id): s.why for s in skipped}
    assert why == {
        "router:2:17": "p.routing.decisions is a service's output; replays go only to "
        "p.contact.events, p.agent.events",
        "notifier:0:1": "an output of notifier (to p.notifications), not an input to resend",
        "router:0:2": "its value was cut to fit: the original record is not there to resend",
    }


def test_a_dead_letter_older_than_the_dedupe_window_is_flagged() -> None:
    old = letter(at_ms=NOW_MS - 2 * 3600 * 1000)
    replays, skipped = plan_replay([old], TOPICS, now_ms=NOW_MS, dedupe_window_s=3600)
    lines = replay_lines(replays, skipped, dedupe_window_s=3600)
    assert replays[0].stale
    assert lines[1] == (
        "  note: older than the services' dedupe window (3600 s): a service that applied it "
        "then may apply it again"
    )


def test_replay_says_what_it_sent_or_in_a_dry_run_would_send() -> None:
    replays, skipped = plan_replay(
        [letter(), letter(topic="p.routing.decisions", at=(0, 1))],
        TOPICS,
        now_ms=NOW_MS,
        dedupe_window_s=3600,
    )
    assert replay_lines(replays, skipped, dedupe_window_s=3600) == [
        f"would send router:2:17 -> p.contact.events (key acme, event pbx-1842, {len(ARRIVAL)} bytes)",
        "skipped router:0:1: p.routing.decisions is a service's output; replays go only to "
        "p.contact.events, p.agent.events",
        "dry run: 1 record would be sent, 1 skipped; nothing was sent",
    ]
    sent = replay_lines(replays, skipped, dedupe_window_s=3600, placed=[(1, 99)])
    assert sent[0].startswith("sent router:2:17 -> p.contact.events partition 1 offset 99 ")
    assert sent[-1] == "1 record sent, 1 skipped"
