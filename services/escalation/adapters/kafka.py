"""The escalation service's Kafka side: translation between records and the core.

Inputs: contact.events, agent.events (manager requested), routing.decisions,
escalation.commands (managers' commands, from whichever instance took the gRPC call: see
:mod:`.replicas`) and policies (each domain's policy, whose ``[escalation]`` table is
applied live: :meth:`EscalationCore.change_policy`). Outputs: every escalation change as
an ``EscalationRecord`` on the compacted ``escalations`` topic, keyed by escalation id,
its envelope carrying the domain's policy version; each command's outcome on
``escalation.replies``; case facts, and the domain's policy version and document, in
``escalation.changelog``. On assignment the handler reads the topic and the changelog
back and rebuilds each domain's core from them under the domain's own policy
(:meth:`EscalationCore.restore` re-arms the deadlines from their stored instants).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiokafka.partitioner import murmur2
from switchboard.v1 import escalation_pb2
from switchboard.v1.envelope_pb2 import Envelope

from services.common.clock import Clock, SystemClock
from services.common.codec import decode_envelope, encode_record, new_envelope
from services.common.config import KafkaSettings
from services.common.errors import DecodeError, RejectedEvent
from services.common.kafka import InboundRecord, OutboundRecord, read_latest_records
from services.common.policy_input import PolicyInput, policy_input, require_newer
from services.common.state import DomainStateHandler, DomainStates
from services.common.topics import Topics, load_topic_specs
from services.escalation.adapters.mapping import (
    command_from_proto,
    envelope_to_input,
    escalation_from_proto,
    escalation_to_proto,
    outcome_to_proto,
)
from services.escalation.adapters.replicas import REPLIES_TOPIC
from services.escalation.domain import (
    EscalationCore,
    EscalationPolicy,
    PolicyError,
    RejectedInput,
)
from services.escalation.domain import commands as c
from services.escalation.domain import model as m
from services.escalation.domain.core import stored_policy
from services.escalation.domain.policy import policy_in_document
from services.escalation.metrics import EscalationMetrics

__all__ = ["EscalationHandler"]

log = structlog.get_logger("escalation")


@dataclass
class EscalationHandler(DomainStateHandler[EscalationCore]):
    policy: EscalationPolicy
    topics: Topics
    kafka: KafkaSettings
    metrics: EscalationMetrics
    clock: Clock = field(default_factory=SystemClock)
    states: DomainStates[EscalationCore] = field(init=False)
    #: Escalations read back from the topic, by domain, while partitions are being assigned.
    _restored: dict[str, list[m.Escalation]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.states = DomainStates.for_service(
            "escalation",
            self.kafka,
            self.topics.changelog,
            new_core=lambda domain: EscalationCore(self.policy, domain),
            restore_core=self._restore_core,
        )

    def _restore_core(self, domain: str, facts: Mapping[str, Any]) -> EscalationCore:
        """The domain's core from its records, under the policy its changelog holds; what
        it could not place is logged and counted, never fatal (a restore that raised would
        stop the service for good: a stored document this build cannot read runs the
        domain on the configured default, and says so)."""
        version, document = stored_policy(facts)
        policy = self.policy
        if version:
            try:
                policy = policy_in_document(document, self.policy)
            except PolicyError as exc:
                log.warning(
                    "restore: the domain's stored policy is unreadable; running the default",
                    domain=domain,
                    policy_version=version,
                    reason=exc.reason,
                )
                self.metrics.restore_problems.inc()
                version, document = 0, ""
        core = EscalationCore.restore(
            policy,
            domain,
            self._restored.get(domain, []),
            facts,
            self.clock.now(),
            version=version,
            document=document,
        )
        for problem in core.restore_problems:
            log.warning(
                "restore: state the policy no longer covers", domain=domain, problem=problem
            )
        self.metrics.restore_problems.inc(len(core.restore_problems))
        return core

    # -- EventHandler ----------------------------------------------------------------

    def handle(self, envelope: Envelope, record: InboundRecord) -> Sequence[OutboundRecord]:
        changed = policy_input(envelope, record.topic.removeprefix(self.topics.prefix))
        if changed is not None:
            return self._change_policy(changed, record.partition)
        if envelope.WhichOneof("payload") == "escalation_command":
            return self._command(envelope)
        event = envelope_to_input(envelope)
        if event is None:
            return []
        if not envelope.domain or "/" in envelope.domain:
            raise RejectedEvent("envelope.domain is required and must not contain '/'")
        core = self.states.core_for(envelope.domain, record.partition)
        try:
            changes = core.apply(event, self.clock.now())
        except RejectedInput as exc:
            raise RejectedEvent(exc.reason) from None
        return self.emit_changes(changes)

    def _change_policy(self, changed: PolicyInput, partition: int) -> list[OutboundRecord]:
        """A new version of the domain's policy: applied from now on, or refused (stale, or
        a document the policy parser refuses) with nothing changed."""
        held = self.states.cores.get(changed.domain)
        applied = 0 if held is None else held.policy_version
        require_newer(changed, applied)
        try:
            policy = policy_in_document(changed.document, self.policy)
        except PolicyError as exc:
            raise RejectedEvent(
                f"policy version {changed.version} of domain {changed.domain!r}: {exc.reason}"
            ) from None
        core = self.states.core_for(changed.domain, partition)
        changes = core.change_policy(policy, changed.version, self.clock.now(), changed.document)
        log.info(
            "policy applied",
            domain=changed.domain,
            policy_version=changed.version,
            previous_version=applied,
            changes=len(changes),
        )
        return self.emit_changes(changes)

    def _command(self, envelope: Envelope) -> list[OutboundRecord]:
        """A manager's command for a domain on this instance's partition: applied through
        the core (which never creates a domain for it), its changes and its answer
        written in this partition's transaction."""
        command, requester, expires_at = command_from_proto(envelope.escalation_command)
        core = self.states.cores.get(envelope.domain)
        outcome = c.run_command(core, command, requester, self.clock.now(), expires_at)
        log.info(
            "command applied",
            command_id=envelope.event_id,
            escalation_id=command.escalation_id,
            by=requester.subject,
            status=outcome.status.slug,
        )
        return [*self.emit_changes(outcome.changes), self._answer(envelope, outcome)]

    def _answer(self, envelope: Envelope, outcome: c.CommandOutcome) -> OutboundRecord:
        """The command's outcome on ``escalation.replies``, for the instance waiting for it."""
        answer = new_envelope(
            envelope.domain,
            "escalation",
            event_id=f"{envelope.event_id}/result",
            occurred_at=self.clock.now(),
        )
        answer.policy_version = self._policy_version(envelope.domain)
        answer.escalation_command_result.CopyFrom(
            outcome_to_proto(envelope.event_id, outcome.answer())
        )
        # internal (read only by escalation instances): always binary
        value, headers = encode_record(answer, "protobuf")
        return OutboundRecord(
            self.topics.name(REPLIES_TOPIC), value, envelope.domain.encode(), headers=headers
        )

    def on_refused(
        self, envelope: Envelope, record: InboundRecord, reason: str
    ) -> Sequence[OutboundRecord]:
        """A command the loop dead-lettered is answered, so its sender does not wait for
        nothing; other events have no one to answer here."""
        if envelope.WhichOneof("payload") != "escalation_command":
            return []
        return [self._answer(envelope, c.CommandOutcome(c.CommandStatus.REJECTED, reason))]

    def on_timer(self, partition: int, now: float) -> Sequence[OutboundRecord]:
        out: list[OutboundRecord] = []
        for _, core in self.states.due(partition, now):
            out.extend(self.emit_changes(core.tick(now)))
        return out

    async def on_assigned(self, partitions: set[int]) -> None:
        if not partitions:
            return
        await self._read_escalations()
        restored = await self.states.restore(self.kafka, partitions)
        # A domain with escalations on the topic but no case facts left gets its core too
        # (restore keeps its open escalations), on the partition its domain key hashes to.
        count = self._partition_count(self.topics.contact_events)
        for domain in self._restored:
            home = (murmur2(domain.encode()) & 0x7FFFFFFF) % count
            if home in partitions and domain not in self.states.cores:
                self.states.adopt(domain, home, self.states.restore_core(domain, {}))
        self._restored = {}
        self._update_open_gauge()
        log.info("escalation state restored", partitions=sorted(partitions), domains=restored)

    def drain_changelog(self, partition: int) -> Sequence[OutboundRecord]:
        """The case facts to persist, the re-homings a restore made (published once, in the
        partition's next transaction) and a tombstone on ``escalations`` for every
        escalation forgotten with its case."""
        out = list(super().drain_changelog(partition))
        for _, core in self.states.on_partition(partition):
            out.extend(self.emit_changes(core.take_restore_changes()))
            out.extend(
                OutboundRecord(self.topics.escalations, value=None, key=e.escalation_id.encode())
                for e in core.take_retired()
            )
        return out

    async def on_revoked(self, partitions: set[int]) -> None:
        await super().on_revoked(partitions)
        self._update_open_gauge()

    async def _read_escalations(self) -> None:
        """Keep the latest record of every escalation on the topic in ``_restored``, by
        domain; records that do not decode or map are skipped, logged and counted."""
        topic = self.topics.escalations
        entries = await read_latest_records(self.kafka, topic, range(self._partition_count(topic)))
        by_domain: dict[str, list[m.Escalation]] = defaultdict(list)
        for value, headers in entries.values():
            try:
                envelope = decode_envelope(value, headers)
                escalation = escalation_from_proto(envelope.escalation_record.escalation)
            except (DecodeError, ValueError) as exc:
                log.warning("restore: unreadable escalation record skipped", error=str(exc))
                self.metrics.restore_problems.inc()
                continue
            by_domain[escalation.domain].append(escalation)
        self._restored = dict(by_domain)

    def _partition_count(self, topic: str) -> int:
        """The topic's partition count as declared in the topic specs (1 if not declared)."""
        base = topic.removeprefix(self.topics.prefix)
        for spec in load_topic_specs():
            if spec.name == base:
                return spec.partitions
        return 1

    # -- publishing ---------------------------------------------------------------------

    def emit_changes(self, changes: Sequence[m.EscalationChange]) -> list[OutboundRecord]:
        """The ``escalations`` records for ``changes``, which are also counted in the
        metrics and logged (Watch streams get them from the read view, once committed)."""
        out = []
        for change in changes:
            e = change.escalation
            record = escalation_pb2.EscalationRecord(
                kind=escalation_pb2.EscalationChangeKind.ValueType(change.kind.value),
                escalation=escalation_to_proto(e),
            )
            envelope = new_envelope(
                e.domain,
                "escalation",
                event_id=f"{e.escalation_id}@{e.version}",
                occurred_at=self.clock.now(),
            )
            envelope.policy_version = self._policy_version(e.domain)
            envelope.escalation_record.CopyFrom(record)
            value, headers = encode_record(envelope, self.kafka.output_format)
            out.append(
                OutboundRecord(
                    self.topics.escalations, value, e.escalation_id.encode(), headers=headers
                )
            )
            self._count(change)
            log.info(
                "escalation changed",
                kind=change.kind.slug,
                escalation_id=e.escalation_id,
                reason=e.reason.slug,
                tier=e.tier.slug,
                team=e.team,
                contact_id=e.contact_id,
            )
        if changes:
            self._update_open_gauge()
        return out

    def _policy_version(self, domain: str) -> int:
        """The version of ``domain``'s policy its outputs are decided under (0: default)."""
        core = self.states.cores.get(domain)
        return 0 if core is None else core.policy_version

    def _count(self, change: m.EscalationChange) -> None:
        e = change.escalation
        kind = change.kind
        if kind is m.EscalationChangeKind.RAISED:
            self.metrics.raised.labels(e.reason.slug, e.tier.slug).inc()
        elif kind is m.EscalationChangeKind.RE_ESCALATED and e.previous_tiers:
            self.metrics.reescalated.labels(e.previous_tiers[-1].slug).inc()
        elif kind is m.EscalationChangeKind.ACKNOWLEDGED and e.time_to_acknowledge is not None:
            self.metrics.time_to_ack.observe(e.time_to_acknowledge)
        elif kind is m.EscalationChangeKind.RESOLVED:
            code = self.metrics.resolution_code(e.resolution_code or "unknown")
            self.metrics.resolved.labels(code).inc()

    def _update_open_gauge(self) -> None:
        counts: dict[str, int] = {t.slug: 0 for t in m.Tier}
        for _, core in self.states.items():
            for e in core.open_escalations():
                counts[e.tier.slug] += 1
        for tier, count in counts.items():
            self.metrics.open.labels(tier).set(count)
