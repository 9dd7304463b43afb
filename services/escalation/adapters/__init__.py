"""Adapters of the escalation service: mapping, Kafka handler, managers' gRPC API."""
