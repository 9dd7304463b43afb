"""A domain's escalation policy changed live, through the real broker (issue #16): a tier
deadline shortened while an escalation is open moves it on the new deadline, an invalid
or stale version is dead-lettered and changes nothing, and a restart keeps the version."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest
from switchboard.v1 import escalation_pb2, escalation_pb2_grpc
from switchboard.v1.envelope_pb2 import Envelope

from services.common.codec import decode_envelope, encode_envelope, new_envelope
from services.common.topics import Topics
from tests.integration.test_escalation_service import CONFIG, arrived, escalation
from tests.support import KafkaBroker, bearer

pytestmark = pytest.mark.kafka

#: The demo's [escalation] table (the last part of escalation.toml) as a policy document,
#: with the wait threshold the tests' default policy uses.
DOCUMENT = CONFIG.read_text()[CONFIG.read_text().index("[escalation]\n") :].replace(
    "wait_threshold_s = 60", "wait_threshold_s = 1"
)
SHORT = DOCUMENT.replace("supervisor = 120", "supervisor = 3")
assert SHORT != DOCUMENT


def policy(version: int, document: str, domain: str = "acme") -> bytes:
    # a new id each time: a record read again is a duplicate (skipped), a stale one is not
    envelope = new_envelope(domain, "router", event_id=f"policy/{domain}/{uuid.uuid4().hex}")
    envelope.policy_changed.current.version = version
    envelope.policy_changed.current.document = document
    envelope.policy_changed.current.author = "ops"
    return encode_envelope(envelope)


async def escalation_records(kafka: KafkaBroker, topics: Topics, expect: int) -> list[Envelope]:
    records = await kafka.read_all(topics.escalations, expect=expect)
    assert len(records) == expect, [decode_envelope(r.value, r.headers) for r in records]
    return [decode_envelope(r.value, r.headers) for r in records]


async def dead_letter_reasons(kafka: KafkaBroker, topics: Topics, expect: int) -> list[str]:
    records = await kafka.read_all(topics.dead_letters("escalation"), expect=expect)
    reasons = [dict(r.headers)["dlq.reason"].decode() for r in records]
    assert len(reasons) == expect, reasons
    return reasons


async def test_a_shortened_tier_deadline_moves_an_open_escalation_and_a_restart_keeps_it(
    kafka: KafkaBroker,
) -> None:
    topics = await kafka.fresh_topics()
    policies = topics.name("policies")
    async with escalation(kafka, topics):
        await kafka.produce(topics.contact_events, [arrived("c1", "billing-pl")])
        [raised] = await escalation_records(kafka, topics, 1)
        assert raised.escalation_record.escalation.tier == escalation_pb2.TIER_SUPERVISOR
        assert raised.policy_version == 0, "decided under the configured default"
        opened = raised.escalation_record.escalation.raised_at.ToSeconds()

        # the supervisor's 120 s become 3 s while the escalation is open
        await kafka.produce(policies, [policy(2, SHORT)])
        _, updated, moved = await escalation_records(kafka, topics, 3)
        assert updated.escalation_record.kind == escalation_pb2.ESCALATION_CHANGE_KIND_UPDATED
        assert updated.escalation_record.escalation.ack_deadline.ToSeconds() == opened + 3
        assert moved.escalation_record.kind == escalation_pb2.ESCALATION_CHANGE_KIND_RE_ESCALATED
        esc: Any = moved.escalation_record.escalation
        assert (esc.tier, esc.assignee) == (escalation_pb2.TIER_MANAGER, "mira")
        assert list(esc.previous_tiers) == [escalation_pb2.TIER_SUPERVISOR]
        # it moved on the new deadline (the old one was two minutes away)
        assert esc.ack_deadline.ToSeconds() == pytest.approx(opened + 3 + 240, abs=1)
        assert (updated.policy_version, moved.policy_version) == (2, 2)

        # refused, nothing changed: a document the parser refuses, a stale version
        invalid = SHORT.replace(
            '[escalation.queues.billing-pl]\nteam = "polish"',
            ('[escalation.queues.billing-pl]\nteam = "nobody"'),
        )
        assert invalid != SHORT
        await kafka.produce(policies, [policy(3, invalid), policy(2, DOCUMENT)])
        assert await dead_letter_reasons(kafka, topics, 2) == [
            "policy version 3 of domain 'acme': escalation.queues.billing-pl.team: "
            "unknown team 'nobody'",
            "policy version 2 of domain 'acme' is stale: version 2 is already applied",
        ]

    async with escalation(kafka, topics):
        # the restarted instance runs the domain on version 2: 2 is still stale ...
        await kafka.produce(policies, [policy(2, DOCUMENT)])
        reasons = await dead_letter_reasons(kafka, topics, 3)
        assert (
            reasons[2] == "policy version 2 of domain 'acme' is stale: version 2 is already applied"
        )
        # ... and what it decides carries version 2
        await kafka.produce(topics.contact_events, [arrived("c2", "sales-pl")])
        records = await escalation_records(kafka, topics, 4)
        assert records[3].escalation_record.escalation.contact_id == "c2"
        assert records[3].policy_version == 2


async def test_another_domain_keeps_the_default_while_one_changes(kafka: KafkaBroker) -> None:
    topics = await kafka.fresh_topics()
    async with escalation(kafka, topics):
        await kafka.produce(topics.name("policies"), [policy(1, SHORT, domain="globex")])
        await kafka.produce(topics.contact_events, [arrived("c1", "billing-pl")])
        [raised] = await escalation_records(kafka, topics, 1)
        assert raised.domain == "acme"
        assert raised.policy_version == 0
        assert raised.escalation_record.escalation.ack_deadline.ToSeconds() == pytest.approx(
            raised.escalation_record.escalation.raised_at.ToSeconds() + 120
        )


async def test_who_sees_and_acts_on_an_escalation_is_its_domains_policy(kafka: KafkaBroker) -> None:
    """Any instance's read view and the owner's command check both follow the version."""
    topics = await kafka.fresh_topics()
    zofia = bearer("zofia", "escalation", "manager", teams=["polish"])
    piotr = bearer("piotr", "escalation", "manager", teams=["polish"])
    handed_over = DOCUMENT.replace(
        '[escalation.teams.polish]\nsupervisor = "piotr"',
        '[escalation.teams.polish]\nsupervisor = "zofia"',
    )
    assert handed_over != DOCUMENT
    async with escalation(kafka, topics) as port:
        await kafka.produce(topics.name("policies"), [policy(1, handed_over)])
        await kafka.produce(topics.contact_events, [arrived("c1", "billing-pl")])
        [raised] = await escalation_records(kafka, topics, 1)
        assert raised.escalation_record.escalation.assignee == "zofia"
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = escalation_pb2_grpc.EscalationServiceStub(channel)
            listed = await stub.ListOpen(escalation_pb2.ListOpenRequest(), metadata=zofia)
            assert [e.contact_id for e in listed.escalations] == ["c1"]
            hidden = await stub.ListOpen(escalation_pb2.ListOpenRequest(), metadata=piotr)
            assert list(hidden.escalations) == [], "piotr staffs polish only in the default"
            esc_id = raised.escalation_record.escalation.escalation_id
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Acknowledge(
                    escalation_pb2.AcknowledgeRequest(escalation_id=esc_id), metadata=piotr
                )
            assert refused.value.code() == grpc.StatusCode.NOT_FOUND
            acked = await stub.Acknowledge(
                escalation_pb2.AcknowledgeRequest(escalation_id=esc_id), metadata=zofia
            )
            assert acked.escalation.acknowledged_by == "zofia"
