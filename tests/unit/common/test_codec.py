"""The envelope codec: binary by default, JSON on request, a typed reason for anything else."""

from __future__ import annotations

import json

import pytest
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from switchboard.v1.common_pb2 import CHANNEL_CHAT
from switchboard.v1.envelope_pb2 import Envelope

from services.common.codec import (
    decode_envelope,
    encode_envelope,
    encode_record,
    new_envelope,
    set_timestamp,
)
from services.common.errors import DecodeError

JSON = (("content-type", b"application/json"),)


def _arrived() -> Envelope:
    envelope = new_envelope("acme", "pbx", event_id="e-1", occurred_at=1_700_000_000.5)
    envelope.contact_arrived.contact_id = "c-1"
    envelope.contact_arrived.queue = "billing"
    envelope.contact_arrived.channel = CHANNEL_CHAT
    return envelope


def test_binary_round_trip_keeps_every_field() -> None:
    original = _arrived()
    assert decode_envelope(encode_envelope(original)) == original


def test_json_mapping_is_accepted_with_the_content_type_header() -> None:
    original = _arrived()
    text = json_format.MessageToJson(original).encode()
    decoded = decode_envelope(text, JSON)
    assert decoded.contact_arrived.queue == "billing"
    assert decoded.occurred_at.ToSeconds() == 1_700_000_000


def test_handwritten_json_as_kcat_would_send_it() -> None:
    text = b'{"eventId": "e-9", "domain": "acme", "contactAbandoned": {"contactId": "c-9"}}'
    assert decode_envelope(text, JSON).contact_abandoned.contact_id == "c-9"


def test_output_records_say_their_content_type_and_read_back_as_written() -> None:
    original = _arrived()
    for output_format, content_type in (
        ("protobuf", b"application/x-protobuf"),
        ("json", b"application/json"),
    ):
        value, headers = encode_record(original, output_format)  # type: ignore[arg-type]
        assert headers == (("content-type", content_type),)
        assert decode_envelope(value, headers) == original


def test_json_output_is_the_mapping_an_integrator_types_on_one_line() -> None:
    offer = new_envelope("acme", "router", event_id="e-2", occurred_at=1_700_000_000.25)
    offer.offer_made.offer_id, offer.offer_made.contact_id = "c-1#1", "c-1"
    offer.offer_made.agent_id, offer.offer_made.queue = "a-1", "billing"
    offer.offer_made.channel = CHANNEL_CHAT
    offer.offer_made.expires_at.FromSeconds(1_700_000_008)
    offer.offer_made.waited.FromSeconds(2)
    offer.offer_made.attempt = 1
    value, _ = encode_record(offer, "json")
    assert value == (
        b'{"eventId":"e-2","occurredAt":"2023-11-14T22:13:20.250Z","domain":"acme",'
        b'"source":"router","offerMade":{"offerId":"c-1#1","contactId":"c-1","agentId":"a-1",'
        b'"queue":"billing","channel":"CHANNEL_CHAT","expiresAt":"2023-11-14T22:13:28Z",'
        b'"waited":"2s","attempt":1,"relaxationStep":0},"policyVersion":0}'
    )
    assert json.loads(value)["offerMade"]["offerId"] == "c-1#1"


@pytest.mark.parametrize(
    ("value", "headers", "reason"),
    [
        (b"", (), "empty"),
        (b"\xff\xff\xff\xff", (), "invalid protobuf"),
        (b"{not json", JSON, "invalid JSON"),
        (
            b'{"eventId": "x", "contactArrived": {"channel": "CHANNEL_TELEPATHY"}}',
            JSON,
            "invalid JSON",
        ),
        (b'{"eventId": "x", "mystery": {}}', JSON, "invalid JSON"),
        (b"\xc3\x28", JSON, "UTF-8"),
        (b"{}", (("content-type", b"text/csv"),), "unsupported content-type"),
        (Envelope(event_id="x").SerializeToString(), (), "no payload"),
        (
            Envelope(domain="d", contact_abandoned={"contact_id": "c"}).SerializeToString(),
            (),
            "no event_id",
        ),
        (b"\x00" * 1_000_001, (), "exceeds"),
    ],
)
def test_bad_input_raises_decode_error_with_reason(
    value: bytes, headers: tuple[tuple[str, bytes], ...], reason: str
) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_envelope(value, headers)
    assert reason in caught.value.reason
    assert not caught.value.retriable


@pytest.mark.parametrize(
    "epoch",
    [
        0.0,
        1_700_000_000.0,
        1_700_000_000.5,
        1_700_000_000.9999999,
        5.9999999999,  # rounds to 1e9 nanos: must stay in second 5
        1.25e-7,
    ],
)
def test_timestamps_keep_their_second_and_nanos_in_range(epoch: float) -> None:
    """Regression for 3c640e8: the old rounding could carry a fraction into the next second
    (or drop one), and ``FromDatetime`` was slow."""
    stamp = Timestamp()
    set_timestamp(stamp, epoch)
    assert stamp.seconds == int(epoch)
    assert 0 <= stamp.nanos <= 999_999_999
    assert abs(stamp.seconds + stamp.nanos / 1e9 - epoch) < 1e-6
