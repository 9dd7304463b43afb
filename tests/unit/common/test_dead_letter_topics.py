"""Dead letters, one topic per service: provisioned, and writable only by their service."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.access import ACCESS, OPERATOR, REPLAY_TOPICS, acl_rules, operator_rules
from services.common.errors import ConfigError
from services.common.topics import DLQ_SUFFIX, Topics, load_topic_specs


def test_every_service_has_its_own_dead_letter_topic_and_there_are_no_others() -> None:
    dead_letters = {s.name for s in load_topic_specs() if s.name.endswith(DLQ_SUFFIX)}
    assert dead_letters == {f"{service}.dlq" for service in ACCESS}
    for spec in load_topic_specs(prefix="p."):
        if spec.name.endswith(DLQ_SUFFIX):
            assert not spec.compacted
            assert spec.retention_ms == 7 * 24 * 3600 * 1000


def test_a_service_writes_its_own_dead_letters_and_no_one_elses() -> None:
    topics = Topics("p.")
    for service in ACCESS:
        rules = acl_rules(service, topics)
        writable = {
            n for r in rules if "Write" in r.operations and r.resource == "topic" for n in r.names
        }
        readable = {
            n for r in rules if "Read" in r.operations and r.resource == "topic" for n in r.names
        }
        assert {n for n in writable if n.endswith(DLQ_SUFFIX)} == {f"p.{service}.dlq"}
        assert not {n for n in readable if n.endswith(DLQ_SUFFIX)}


def test_the_operator_reads_every_dead_letter_topic_and_writes_only_where_replays_go() -> None:
    topics = Topics("p.")
    rules = operator_rules(topics, groups=["p.router"])
    by_operations: dict[tuple[str, tuple[str, ...]], set[str]] = {}
    for rule in rules:
        by_operations.setdefault((rule.resource, rule.operations), set()).update(rule.names)
    assert by_operations[("topic", ("Read", "Describe"))] == {f"p.{s}.dlq" for s in ACCESS}
    assert by_operations[("topic", ("Write", "Describe"))] == {f"p.{t}" for t in REPLAY_TOPICS}
    assert "p.routing.decisions" in by_operations[("topic", ("Describe",))]
    assert by_operations[("group", ("Describe",))] == {"p.router"}  # lag, never a member
    assert {rule.resource for rule in rules} == {"topic", "group"}  # no transactional id
    assert OPERATOR not in ACCESS


def test_the_old_per_topic_dlq_flag_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "topics.toml"
    path.write_text('[topics."contact.events"]\npartitions = 4\ndlq = true\n')
    with pytest.raises(ConfigError, match=r"topics\.'contact\.events': 'dlq' is gone"):
        load_topic_specs(path)
