"""Adapters of the router: protobuf mapping, the Kafka handler, the RouterAdmin servicer."""
