"""Simulated telephony platform and agent desktops that drive Switchboard over Kafka.

A pure, seeded discrete-event core (:mod:`.core`) decides what customers and agents do;
a thin asyncio adapter (:mod:`.runner`, :mod:`.adapters`) runs it in real time, publishing
contact and agent events and reading the router's decisions, like a real telephony system.
"""

__all__: list[str] = []
