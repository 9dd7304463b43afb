"""Adapters of the simulator: Kafka in and out, and the wire format (protobuf envelopes)."""

__all__: list[str] = []
