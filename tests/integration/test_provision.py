"""Provisioning against the real broker: idempotent, ready on return, strict on layout."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from services.common.errors import ConfigError
from services.common.provision import ensure_topics
from services.common.topics import load_topic_specs
from tests.support import KafkaBroker

pytestmark = pytest.mark.kafka


async def test_topics_are_created_once_and_every_partition_has_a_leader(
    kafka: KafkaBroker,
) -> None:
    specs = load_topic_specs(prefix=f"p{uuid.uuid4().hex[:8]}.")
    created = await ensure_topics(kafka.bootstrap_servers, specs)
    assert sorted(created) == sorted(spec.name for spec in specs)
    assert await ensure_topics(kafka.bootstrap_servers, specs) == []  # nothing twice

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        described = {t["topic"]: t for t in await admin.describe_topics([s.name for s in specs])}
    finally:
        await admin.close()
    for spec in specs:
        partitions = described[spec.name]["partitions"]
        assert len(partitions) == spec.partitions
        assert all(p["leader"] >= 0 and p["isr"] for p in partitions), spec.name


async def test_an_existing_topic_with_another_partition_count_is_refused_by_name(
    kafka: KafkaBroker,
) -> None:
    specs = load_topic_specs(prefix=f"p{uuid.uuid4().hex[:8]}.")
    await ensure_topics(kafka.bootstrap_servers, specs)
    contact_events = next(s for s in specs if s.name.endswith("contact.events"))
    changed = dataclasses.replace(contact_events, partitions=contact_events.partitions * 2)
    with pytest.raises(ConfigError, match=contact_events.name.replace(".", r"\.")):
        await ensure_topics(kafka.bootstrap_servers, [changed])
