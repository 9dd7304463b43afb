"""The envelope codec: binary by default, JSON on request, a typed reason for anything else."""

from __future__ import annotations

import pytest
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from switchboard.v1.common_pb2 import CHANNEL_CHAT
from switchboard.v1.envelope_pb2 import Envelope

from services.common.codec import decode_envelope, encode_envelope, new_envelope, set_timestamp
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
