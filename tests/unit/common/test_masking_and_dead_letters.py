"""Customers' contact details never reach logs; dead letters say why and where from."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from services.common.config import LogSettings
from services.common.kafka import (
    InboundRecord,
    OutboundRecord,
    dead_letter_of_output,
    dead_letter_record,
    event_id_in,
)
from services.common.log_setup import configure_logging, mask_text
from services.common.topics import Topics


def test_email_keeps_first_letter_and_domain() -> None:
    assert mask_text("write to anna.kowalska@example.pl now") == "write to a***@example.pl now"


def test_phone_numbers_keep_only_last_two_digits() -> None:
    assert mask_text("call +48 600 123 456") == "call ***56"
    assert mask_text("tel. (495) 123-45-67") == "tel. ***67"


def test_ids_and_short_numbers_are_left_alone() -> None:
    assert (
        mask_text("contact c-42 waited 120 s in queue 7") == "contact c-42 waited 120 s in queue 7"
    )


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("write to anna.kowalska@example.pl", "write to a***@example.pl"),  # en/pl
        ("пишите иван.петров@почта.рф", "пишите и***@почта.рф"),  # ru, Cyrillic address
        ("napisz do zofia.żak@poczta.pl", "napisz do z***@poczta.pl"),  # pl, diacritics
        ("call +48 600 123 456", "call ***56"),
        ("звоните 8 916 555 12 34", "звоните ***34"),
        ("tel. 600123456ext12", "tel. ***12"),  # an extension glued to the number
        ("tel. 600-123-456 wew. 12", "tel. ***12"),
        ("+7 (916) 555-12-34 доб. 5", "***45"),
    ],
)
def test_contact_details_are_masked_in_any_script(text: str, masked: str) -> None:
    assert mask_text(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "record of 1048576 bytes exceeds 1000000",  # sizes
        "dead letter for event e-600123456 of contact c-6624bd-00001",  # ids with digits
        "event 9f3c0012345678ab4d1e replayed",  # a hex event id
        "took 1234567 us",
    ],
)
def test_ids_offsets_and_sizes_are_not_masked(text: str) -> None:
    assert mask_text(text) == text


def test_names_and_bodies_under_personal_keys_are_masked_ids_under_id_keys_are_not() -> None:
    out = io.StringIO()
    configure_logging(LogSettings(format="json"), stream=out)
    structlog.get_logger().warning(
        "delivered",
        customer={"name": "Zofia Żak", "phone": "600123456", "customer_id": "cust-600123456"},
        to="Ольга Петрова",
        body="Hello Anna, your account number 600123456 is locked",
        event_id="e-600123456",
        offset=123456789,
        size=1048576,
        contact_id="+48600123456",  # an id is an id, even if it looks like a phone
    )
    line = json.loads(out.getvalue())
    assert line["customer"] == {"name": "Z***", "phone": "***56", "customer_id": "cust-600123456"}
    assert line["to"] == "\u041e***"  # Cyrillic O
    assert line["body"] == "H***"
    assert (line["event_id"], line["offset"], line["size"]) == ("e-600123456", 123456789, 1048576)
    assert line["contact_id"] == "+48600123456"


def test_json_log_line_masks_nested_values() -> None:
    out = io.StringIO()
    configure_logging(LogSettings(format="json"), stream=out)
    structlog.get_logger().info(
        "notified", customer={"phone": "+7 916 555 12 34"}, to="ivan@mail.ru"
    )
    line = json.loads(out.getvalue())
    assert line["customer"]["phone"] == "***34"
    assert line["to"] == "i***@mail.ru"
    assert line["event"] == "notified"


def test_dead_letter_carries_reason_source_and_original_bytes() -> None:
    record = InboundRecord(
        topic="p.contact.events",
        partition=3,
        offset=41,
        key=b"acme",
        value=b"\x00garbage",
        headers=(
            ("content-type", b"application/json"),
            ("dlq.reason", b"spoofed"),
            ("dlq.replayed-from", b"p.router.dlq/1/7"),
        ),
        timestamp_ms=0,
    )
    letter = dead_letter_record(Topics("p."), record, "invalid JSON", "decode", "router", "e-7")
    headers = dict(letter.headers)
    assert letter.topic == "p.router.dlq"  # the refusing service's own dead letters
    assert letter.value == b"\x00garbage"
    assert letter.key == b"acme"
    assert headers["dlq.reason"] == b"invalid JSON"
    assert headers["dlq.source.topic"] == b"p.contact.events"
    assert headers["dlq.source.partition"] == b"3"
    assert headers["dlq.source.offset"] == b"41"
    assert headers["dlq.service"] == b"router"
    assert headers["dlq.event_id"] == b"e-7"
    assert headers["content-type"] == b"application/json"
    assert [h for h in letter.headers if h[0] == "dlq.reason"] == [("dlq.reason", b"invalid JSON")]
    # A replay refused again says so (switchboard dlq replay set it).
    assert headers["dlq.replayed-from"] == b"p.router.dlq/1/7"


def test_each_service_has_one_dead_letter_topic_named_after_it() -> None:
    assert Topics("p.").dead_letters("escalation") == "p.escalation.dlq"
    with pytest.raises(ValueError, match="service name"):
        Topics("p.").dead_letters("p.contact.events")


def test_library_logs_are_json_masked_and_without_the_known_retry_noise() -> None:
    """aiokafka's lines used to reach stderr raw (and unmasked); its warning for the
    NOT_ENOUGH_REPLICAS retry Kafka 4's transaction verification causes is dropped
    (KnownRetryNoise says why), other warnings are kept."""
    out = io.StringIO()
    configure_logging(LogSettings(format="json"), stream=out)
    sender = logging.getLogger("aiokafka.producer.sender")
    sender.warning(
        "Got error produce response on topic-partition %s, retrying. Error: %s",
        "TopicPartition(topic='notifier.changelog', partition=0)",
        "<class 'aiokafka.errors.NotEnoughReplicasError'>",
    )
    logging.getLogger("aiokafka.conn").warning("Unable connect to host of +48 600 123 456")
    logging.getLogger("aiokafka.conn").info("connected")  # below the library level
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines == [
        {
            "event": "Unable connect to host of ***56",
            "level": "warning",
            "logger": "aiokafka.conn",
            "timestamp": lines[0]["timestamp"],
        }
    ]


def test_a_bad_json_event_keeps_its_event_id_and_a_one_line_reason() -> None:
    """An operator greps a dead letter by the id its producer knows."""
    value = b'{"eventId": "pbx-1842", "domain": "acme", "contactArrived": {"queue": 7}}'
    assert event_id_in(value) == "pbx-1842"
    assert event_id_in(b"\x00garbage") == ""
    assert event_id_in(b'["not", "an", "object"]') == ""
    record = InboundRecord("p.contact.events", 0, 1, b"acme", value, (), 0)
    letter = dead_letter_record(
        Topics("p."),
        record,
        "invalid JSON envelope:\n  bad value\n  at queue",
        "decode",
        "router",
    )
    assert dict(letter.headers)["dlq.reason"] == b"invalid JSON envelope: bad value at queue"


def test_an_output_given_up_on_goes_to_the_services_dead_letters_with_a_one_line_reason() -> None:
    out = OutboundRecord("p.notifications", b"record", b"c1")
    letter = dead_letter_of_output(
        Topics("p."), out, "UNAVAILABLE:\n  gateway down\n", "undeliverable", "notifier", "n-1"
    )
    assert letter.topic == "p.notifier.dlq"
    assert (letter.value, letter.key) == (b"record", b"c1")
    assert dict(letter.headers)["dlq.reason"] == b"UNAVAILABLE: gateway down"
    assert dict(letter.headers)["dlq.original.topic"] == b"p.notifications"
