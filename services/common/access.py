"""Which Kafka resources each service may touch: the one table behind the local broker's
ACLs (``deploy/kafka/kafka.sh acl``) and the Strimzi ``KafkaUser`` manifests
(``deploy/k8s/kafka-users.yaml``, checked against it by a test).

A service reads its input topics (and its own state), writes its outputs, its changelog
and its own dead-letter topic (``<service>.dlq``), commits offsets for its own group, and
transacts only under its own transactional-id prefix. Nothing else: another service's
changelog or dead letters, another group's offsets or another service's transactional
ids (fencing it) are refused by the broker.

The operators' user (:data:`OPERATOR`, for ``switchboard dlq`` and ``switchboard topics``)
reads every service's dead letters, writes only the topics a replay goes back to
(:data:`REPLAY_TOPICS`), and may describe every topic and the services' groups (end
offsets and lag); it joins no group and holds no transactional id.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from services.common.topics import Topics

__all__ = [
    "ACCESS",
    "OPERATOR",
    "REPLAY_TOPICS",
    "AclRule",
    "ServiceAccess",
    "acl_command_args",
    "acl_rules",
    "operator_rules",
    "strimzi_user",
]


@dataclass(frozen=True, slots=True)
class ServiceAccess:
    """Topic base names (without the deployment's prefix)."""

    reads: tuple[str, ...]
    writes: tuple[str, ...]


ACCESS: dict[str, ServiceAccess] = {
    "router": ServiceAccess(
        reads=("contact.events", "agent.events", "router.changelog", "policies"),
        writes=("routing.decisions", "router.changelog", "policies"),
    ),
    "escalation": ServiceAccess(
        reads=(
            "contact.events",
            "agent.events",
            "routing.decisions",
            "escalations",
            "escalation.changelog",
            "escalation.commands",
            "escalation.replies",
            "policies",
        ),
        writes=("escalations", "escalation.changelog", "escalation.commands", "escalation.replies"),
    ),
    "notifier": ServiceAccess(
        reads=("contact.events", "routing.decisions", "notifier.changelog", "policies"),
        writes=("notifications", "notifier.changelog"),
    ),
}


#: The Kafka user of operators' tools (``switchboard dlq``, ``switchboard topics``).
OPERATOR = "operator"
#: Where ``switchboard dlq replay`` may send a dead letter back: the topics telephony and
#: desktops publish to. The others are services' outputs; a dead letter of one is a bug
#: to fix, not an event to send again.
REPLAY_TOPICS = ("contact.events", "agent.events")


@dataclass(frozen=True, slots=True)
class AclRule:
    """Allow ``operations`` on resources of one type and pattern."""

    resource: str  # "topic", "group" or "transactional-id" (AclCommand's flag names)
    names: tuple[str, ...]
    operations: tuple[str, ...]
    pattern: str = "literal"  # or "prefixed"


def _sorted(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(names)))


def acl_rules(service: str, topics: Topics, group: str | None = None) -> list[AclRule]:
    """The ACLs of ``service`` under ``topics``' prefix (its group defaults to its name)."""
    access = ACCESS[service]
    group = group or service
    base = group if group.startswith(topics.prefix) else f"{topics.prefix}{group}"
    reads = [topics.name(name) for name in access.reads]
    writes = [topics.name(name) for name in access.writes]
    return [
        AclRule("topic", _sorted(reads), ("Read", "Describe")),
        AclRule("topic", _sorted((*writes, topics.dead_letters(service))), ("Write", "Describe")),
        AclRule("group", (group,), ("Read", "Describe")),
        # The loop's transactional ids are "<prefix><group>-<partition>".
        AclRule("transactional-id", (f"{base}-",), ("Write", "Describe"), "prefixed"),
    ]


def operator_rules(topics: Topics, groups: Sequence[str] | None = None) -> list[AclRule]:
    """The ACLs of :data:`OPERATOR` under ``topics``' prefix; ``groups`` are the services'
    consumer groups (by default their names), whose committed offsets give the lag."""
    dead_letters = [topics.dead_letters(service) for service in ACCESS]
    every = [topics.name(n) for a in ACCESS.values() for n in (*a.reads, *a.writes)]
    return [
        AclRule("topic", _sorted(dead_letters), ("Read", "Describe")),
        AclRule("topic", _sorted(topics.name(n) for n in REPLAY_TOPICS), ("Write", "Describe")),
        AclRule("topic", _sorted(every), ("Describe",)),
        AclRule("group", _sorted(groups if groups is not None else ACCESS), ("Describe",)),
    ]


_STRIMZI_TYPES = {"topic": "topic", "group": "group", "transactional-id": "transactionalId"}
_STRIMZI_PATTERNS = {"literal": "literal", "prefixed": "prefix"}


def strimzi_user(
    service: str, cluster: str = "switchboard", namespace: str = "switchboard"
) -> dict[str, Any]:
    """The Strimzi ``KafkaUser`` of ``service`` (or of :data:`OPERATOR`): SCRAM-SHA-512,
    exactly :func:`acl_rules` (or :func:`operator_rules`)."""
    rules = operator_rules(Topics("")) if service == OPERATOR else acl_rules(service, Topics(""))
    acls = [
        {
            "resource": {
                "type": _STRIMZI_TYPES[rule.resource],
                "name": name,
                "patternType": _STRIMZI_PATTERNS[rule.pattern],
            },
            "operations": list(rule.operations),
        }
        for rule in rules
        for name in rule.names
    ]
    return {
        "apiVersion": "kafka.strimzi.io/v1beta2",
        "kind": "KafkaUser",
        "metadata": {
            "name": service,
            "namespace": namespace,
            "labels": {"strimzi.io/cluster": cluster, "app.kubernetes.io/part-of": "switchboard"},
        },
        "spec": {
            "authentication": {"type": "scram-sha-512"},
            "authorization": {"type": "simple", "acls": acls},
        },
    }


def acl_command_args(principal: str, rules: Iterable[AclRule]) -> list[list[str]]:
    """Arguments of one ``kafka.sh acl`` (Kafka's AclCommand) call per rule."""
    calls = []
    for rule in rules:
        args = ["--add", "--allow-principal", f"User:{principal}"]
        args += [f"--resource-pattern-type={rule.pattern}"]
        for operation in rule.operations:
            args += ["--operation", operation]
        for name in rule.names:
            args += [f"--{rule.resource}", name]
        calls.append(args)
    return calls
