"""Customers' contact details never reach logs; dead letters say why and where from."""

from __future__ import annotations

import io
import json

import structlog

from services.common.config import LogSettings
from services.common.kafka import InboundRecord, dead_letter_record
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
        headers=(("content-type", b"application/json"), ("dlq.reason", b"spoofed")),
        timestamp_ms=0,
    )
    letter = dead_letter_record(Topics("p."), record, "invalid JSON", "decode", "router", "e-7")
    headers = dict(letter.headers)
    assert letter.topic == "p.contact.events.dlq"
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
