"""The router's ``domain`` label: a bounded set of values, and a label never moves back."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry
from switchboard.v1 import common_pb2
from switchboard.v1.envelope_pb2 import Envelope

from services.common.clock import FakeClock
from services.common.codec import new_envelope
from services.common.config import KafkaSettings
from services.common.kafka import InboundRecord
from services.common.topics import Topics
from services.router.adapters.kafka import RouterHandler
from services.router.metric_labels import OTHER, DomainLabels, LabelPolicy, domain_label
from services.router.metrics import RouterMetrics
from tests.unit.router.test_routing_core import T0, policy


def test_the_rule() -> None:
    rule = LabelPolicy(named=frozenset({"acme"}), top=2, min_events=10)
    assert domain_label("acme", rule, set(), 0) == "acme"  # named: always, takes no slot
    assert domain_label("big", rule, set(), 9) == OTHER  # not busy enough yet
    assert domain_label("big", rule, set(), 10) == "big"  # a free slot, earned
    assert domain_label("big", rule, {"big", "x"}, 0) == "big"  # holds a slot: keeps it
    assert domain_label("late", rule, {"big", "x"}, 10**6) == OTHER  # no slot left
    assert domain_label(OTHER, rule, set(), 10**6) == OTHER  # never a second "other"
    with pytest.raises(ValueError, match="other"):
        LabelPolicy(named=frozenset({OTHER}))
    with pytest.raises(ValueError, match="at most 100"):
        LabelPolicy(named=frozenset({"a"}), top=100)


def test_the_bound_holds_and_no_label_flaps_under_10000_domains() -> None:
    """10,000 quiet domains (a few events each) and 3 busy ones, shuffled: the busy ones
    take the slots, at most named + top + 1 label values ever appear, the memory stays
    bounded, and a domain that once had its own label has it after every later event."""
    rng = random.Random(7)
    rule = LabelPolicy(named=frozenset({"acme"}), top=5, min_events=50)
    labels = DomainLabels(rule)
    events = [f"quiet-{n}" for n in range(10_000) for _ in range(rng.randint(1, 3))]
    events += ["busy-1"] * 1500 + ["busy-2"] * 1000 + ["busy-3"] * 800 + ["acme"] * 200
    rng.shuffle(events)
    seen: set[str] = set()
    own: set[str] = set()  # domains that had their own label at some point
    most_tracked = 0
    for domain in events:
        labels.observe(domain)
        label = labels.label(domain)
        seen.add(label)
        assert label in (domain, OTHER)
        if domain in own:
            assert label == domain, f"{domain} lost its label"
        if label == domain:
            own.add(domain)
        most_tracked = max(most_tracked, labels.tracked)
    assert len(seen) <= len(rule.named) + rule.top + 1
    assert {"acme", "busy-1", "busy-2", "busy-3", OTHER} <= seen
    assert len(labels.values()) <= len(rule.named) + rule.top + 1
    assert most_tracked <= rule.top + labels.candidates
    assert all(labels.label(d) == d for d in own)  # and still, at the end


def test_without_slots_everything_unnamed_is_other() -> None:
    labels = DomainLabels(LabelPolicy(named=frozenset({"acme"}), top=0, min_events=1))
    for n in range(1000):
        labels.observe(f"d{n}")
    assert labels.values() == ["acme", OTHER]
    assert labels.tracked == 0


def _arrival(domain: str, contact_id: str) -> Envelope:
    e = new_envelope(domain, "pbx", event_id=f"{domain}-{contact_id}")
    a = e.contact_arrived
    a.contact_id, a.queue, a.channel = contact_id, "billing", common_pb2.CHANNEL_VOICE
    return e


def test_the_router_counts_each_domain_under_its_label() -> None:
    registry = CollectorRegistry()
    handler = RouterHandler(
        policy(),
        Topics(""),
        KafkaSettings(),
        RouterMetrics.create(registry),
        FakeClock(T0),
        labels=DomainLabels(LabelPolicy(named=frozenset({"acme"}), top=1, min_events=2)),
    )

    def handle(domain: str, contact_id: str) -> None:
        record = InboundRecord("contact.events", 0, 0, domain.encode(), b"", [], 0)
        handler.handle(_arrival(domain, contact_id), record)

    def arrived(domain: str) -> float:
        labels = {"domain": domain, "queue": "billing", "channel": "voice"}
        return registry.get_sample_value("switchboard_router_contacts_arrived_total", labels) or 0

    handle("acme", "c1")
    handle("beta", "c1")  # beta's first event: not yet busy enough for the free slot
    handle("beta", "c2")  # its second: it takes the slot
    handle("gamma", "c1")
    handle("gamma", "c2")  # no slot left
    assert (arrived("acme"), arrived("beta"), arrived("gamma"), arrived(OTHER)) == (1, 1, 0, 3)
    handler._gauges_at = 0.0
    handler.drain_changelog(0)  # the gauges: one series per label and queue, not per domain
    waiting = {
        s.labels["domain"]
        for family in registry.collect()
        if family.name == "switchboard_router_contacts_waiting"
        for s in family.samples
    }
    assert waiting == {"acme", "beta", OTHER}

    def now_waiting(domain: str) -> float | None:
        labels = {"domain": domain, "queue": "billing"}
        return registry.get_sample_value("switchboard_router_contacts_waiting", labels)

    # gauges are computed from the state: beta's first contact is under its label now
    assert (now_waiting("acme"), now_waiting("beta"), now_waiting(OTHER)) == (1, 2, 2)
