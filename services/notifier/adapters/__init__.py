"""Adapters of the notifier: protobuf mapping, Kafka handler, delivery worker, gRPC API."""
