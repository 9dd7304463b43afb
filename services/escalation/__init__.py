"""Escalation service: unresolved and breaching cases reach the right manager, who must act.

``domain/`` is the pure rules core (triggers, tiers, deadlines, business hours); adapters
map the protobuf contracts and Kafka/gRPC onto it.
"""

__all__: list[str] = []
