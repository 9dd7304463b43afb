"""Shared runtime of the Switchboard services.

Config, structured logging, metrics, the envelope codec, topics, the transactional
Kafka consume loop with dead-lettering and changelog restore, gRPC server helpers
and graceful shutdown. Nothing here knows about routing, escalation or notification.
"""
