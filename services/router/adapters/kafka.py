"""The router's Kafka handler: envelopes in, routing decisions out, state in the changelog.

Thin by design: map the envelope to a core input, apply it to the domain's core, map
the decisions back to envelopes on ``routing.decisions`` (keyed by domain), and count.

A ``PolicyChanged`` read from ``policies`` (one more co-partitioned input, so it is
applied by the domain's owner in order with the domain's events) is the domain's new
policy: its document's ``[routing]`` table (none: the configured default) is parsed here
and handed to :meth:`RoutingCore.change_policy`. A version not newer than the applied
one, or a document the parser refuses, is refused (dead letter and ``EventRejected``,
the reason naming both versions or the field) and changes nothing. Every decision of a
domain carries ``Envelope.policy_version``, the version its core applied.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from switchboard.v1.envelope_pb2 import Envelope

from services.common.clock import Clock, SystemClock
from services.common.codec import encode_record, new_envelope
from services.common.config import KafkaSettings
from services.common.errors import RejectedEvent
from services.common.kafka import InboundRecord, OutboundRecord
from services.common.state import DomainStateHandler, DomainStates
from services.common.topics import Topics
from services.router.adapters.mapping import decision_to_envelope, envelope_to_input
from services.router.domain import (
    PolicyError,
    RoutingCore,
    RoutingError,
    RoutingPolicy,
    policy_from_document,
)
from services.router.domain import model as m
from services.router.domain.read_model import service_level
from services.router.metric_labels import OTHER, DomainLabels
from services.router.metrics import RouterMetrics

__all__ = ["POLICIES_TOPIC", "RouterHandler"]

#: The domains' policies (``policy.proto``'s PolicyChanged), an input of the router.
POLICIES_TOPIC = "policies"

log = structlog.get_logger("router")
SOURCE = "router"
#: Gauges (waiting, longest wait, agents by state) are recomputed at most this often.
GAUGE_INTERVAL_S = 1.0


@dataclass
class RouterHandler(DomainStateHandler[RoutingCore]):
    """:class:`services.common.kafka.EventHandler` for the router."""

    policy: RoutingPolicy
    topics: Topics
    kafka: KafkaSettings
    metrics: RouterMetrics
    clock: Clock = field(default_factory=SystemClock)
    #: Names this instance in every decision's ``Envelope.source`` ("router/<instance>"),
    #: so operators (and the failover test) can tell which instance decided.
    instance: str = ""
    #: The ``domain`` label of each domain's series (a bounded set, see metric_labels).
    labels: DomainLabels = field(default_factory=DomainLabels)
    states: DomainStates[RoutingCore] = field(init=False)
    _tick_seq: int = 0
    _gauges_at: float = 0.0
    #: (label, queue) series the gauges set last time (a removed queue's are removed).
    _gauge_series: set[tuple[str, str]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.states = DomainStates.for_service(
            "router",
            self.kafka,
            self.topics.changelog,
            new_core=lambda _domain: RoutingCore(self.policy),
            restore_core=self._restore_core,
        )

    # -- EventHandler ----------------------------------------------------------------

    def handle(self, envelope: Envelope, record: InboundRecord) -> Sequence[OutboundRecord]:
        if envelope.WhichOneof("payload") == "policy_changed":
            return self._change_policy(envelope, record)
        event = envelope_to_input(envelope)
        if event is None:
            return []
        if not envelope.domain:
            raise RejectedEvent("envelope.domain is required for routing")
        self._bind(event)
        core = self.states.core_for(envelope.domain, record.partition)
        started = time.perf_counter()
        try:
            decisions = core.apply(event, self.clock.now())
        except RoutingError as exc:
            raise RejectedEvent(exc.reason) from None
        finally:
            self.metrics.decision_seconds.observe(time.perf_counter() - started)
        self.labels.observe(envelope.domain)
        if isinstance(event, m.ContactArrived) and decisions is not None:
            label = self.labels.label(envelope.domain)
            self.metrics.arrived.labels(
                label, self._queue_label(label, event.queue), event.channel.name.lower()
            ).inc()
        return self._publish(envelope.domain, envelope.event_id, decisions, core.policy_version)

    def _change_policy(self, envelope: Envelope, record: InboundRecord) -> list[OutboundRecord]:
        """A domain's new policy version, from ``policies``: applied to its core, or refused
        (stale, or a document the routing parser refuses) with nothing changed."""
        domain = envelope.domain
        if not domain:
            raise RejectedEvent("envelope.domain is required: a policy is a domain's")
        changed = envelope.policy_changed
        if not changed.HasField("current"):
            raise RejectedEvent("policy_changed.current is required")
        version = changed.current.version
        if version == 0:
            raise RejectedEvent("policy_changed.current.version: 0 is not a version")
        core = self.states.core_for(domain, record.partition)
        if version <= core.policy_version:
            raise RejectedEvent(
                f"policy version {version} is stale: version {core.policy_version} is applied"
            )
        document = changed.current.document
        try:
            policy = policy_from_document(document, self.policy)
            decisions = core.change_policy(policy, version, self.clock.now(), document)
        except PolicyError as exc:
            raise RejectedEvent(f"policy version {version} refused: {exc.reason}") from None
        except RoutingError as exc:
            raise RejectedEvent(exc.reason) from None
        log.info(
            "policy applied",
            domain=domain,
            version=version,
            author=changed.current.author,
            queues=sorted(policy.queues),
            own_routing=policy is not self.policy,
        )
        return self._publish(domain, envelope.event_id, decisions, version)

    def on_refused(
        self, envelope: Envelope, record: InboundRecord, reason: str
    ) -> Sequence[OutboundRecord]:
        """An ``EventRejected`` on ``routing.decisions``: the telephony platform and the
        desktops read that stream, so they learn of a refused event without a DLQ reader."""
        answer = new_envelope(
            envelope.domain,
            f"{SOURCE}/{self.instance}" if self.instance else SOURCE,
            event_id=f"rejected:{envelope.event_id}",
            occurred_at=self.clock.now(),
        )
        core = self.states.cores.get(envelope.domain)
        answer.policy_version = core.policy_version if core is not None else 0
        rejected = answer.event_rejected
        rejected.event_id, rejected.reason, rejected.topic = envelope.event_id, reason, record.topic
        rejected.payload = envelope.WhichOneof("payload") or ""
        return [self._record(envelope.domain, answer)]

    def on_timer(self, partition: int, now: float) -> Sequence[OutboundRecord]:
        out: list[OutboundRecord] = []
        for domain, core in self.states.due(partition, now):
            self._tick_seq += 1
            cause = f"tick-{int(now * 1000)}-{self._tick_seq}"
            out.extend(self._publish(domain, cause, core.tick(now), core.policy_version))
        return out

    def _restore_core(self, domain: str, snapshots: Mapping[str, Any]) -> RoutingCore:
        core = RoutingCore.restore(self.policy, snapshots)
        for problem in core.restore_problems:
            log.warning("restore: state the policy no longer covers", domain=domain, why=problem)
        self.metrics.restore_problems.inc(len(core.restore_problems))
        return core

    def drain_changelog(self, partition: int) -> Sequence[OutboundRecord]:
        """The changelog records, after the decisions a restore owes (published once)."""
        self._update_gauges()
        out: list[OutboundRecord] = []
        for domain, core in self.states.on_partition(partition):
            if owed := core.take_restore_decisions():
                cause = f"restore-{self.clock.now():.6f}"
                out.extend(self._publish(domain, cause, owed, core.policy_version))
        out.extend(super().drain_changelog(partition))
        return out

    async def on_assigned(self, partitions: set[int]) -> None:
        restored = await self.states.restore(self.kafka, partitions)
        log.info("router state restored", partitions=sorted(partitions), domains=restored)

    # -- helpers ---------------------------------------------------------------------

    @staticmethod
    def _bind(event: m.Input) -> None:
        ids: dict[str, Any] = {}
        if contact_id := getattr(event, "contact_id", ""):
            ids["contact_id"] = contact_id
        if agent_id := getattr(event, "agent_id", ""):
            ids["agent_id"] = agent_id
        structlog.contextvars.bind_contextvars(**ids)

    def _publish(
        self, domain: str, cause: str, decisions: Sequence[m.Decision], policy_version: int
    ) -> list[OutboundRecord]:
        """The decisions as envelopes, each naming the policy version it was decided under."""
        out = []
        label = self.labels.label(domain)
        for n, decision in enumerate(decisions):
            self._count(label, decision)
            envelope = new_envelope(
                domain,
                f"{SOURCE}/{self.instance}" if self.instance else SOURCE,
                event_id=f"{cause}:{n}",
                occurred_at=self.clock.now(),
            )
            envelope.policy_version = policy_version
            decision_to_envelope(decision, envelope)
            out.append(self._record(domain, envelope))
        if decisions:
            log.debug("decided", decisions=[type(d).__name__ for d in decisions])
        return out

    def _record(self, domain: str, envelope: Envelope) -> OutboundRecord:
        """A decision on ``routing.decisions``, keyed by domain, in the configured format."""
        value, headers = encode_record(envelope, self.kafka.output_format)
        return OutboundRecord(
            self.topics.routing_decisions, value, domain.encode(), headers=headers
        )

    def _queue_label(self, label: str, queue: str) -> str:
        """The ``queue`` label: a labelled domain's own queue names (bounded by its
        policy); under "other", the configured default's, the rest "other" (domains'
        own policies must not make the shared label's series unbounded)."""
        if label != OTHER or queue in self.policy.queues:
            return queue
        return OTHER

    def _count(self, label: str, decision: m.Decision) -> None:
        """Count a decision under its domain's ``label``."""
        metrics = self.metrics
        match decision:
            case m.OfferMade():
                metrics.offers.labels(label, "made").inc()
            case m.ContactAssigned():
                queue = self._queue_label(label, decision.queue)
                metrics.offers.labels(label, "accepted").inc()
                metrics.answered.labels(
                    label, queue, str(decision.within_service_level).lower()
                ).inc()
                metrics.wait_seconds.labels(label, queue).observe(decision.waited)
            case m.OfferTimedOut():
                metrics.offers.labels(label, "timed_out").inc()
            case m.ContactRequeued() if decision.reason == m.RequeueReason.REJECTED:
                metrics.offers.labels(label, "rejected").inc()
            case m.ContactRequeued() if decision.reason == m.RequeueReason.AGENT_UNAVAILABLE:
                metrics.offers.labels(label, "withdrawn").inc()
            case m.ContactClosed() if decision.abandoned:
                metrics.abandoned.labels(label, self._queue_label(label, decision.queue)).inc()
            case _:
                pass

    def _update_gauges(self) -> None:
        """Per (label, queue): waiting, longest wait and the service level; per label:
        agents by state and occupancy. A label's service level is
        :func:`~services.router.domain.read_model.service_level` of its domains' summed
        counts, so one label holding one domain shows exactly what RouterAdmin shows."""
        now = self.clock.now()
        if now - self._gauges_at < GAUGE_INTERVAL_S:
            return
        self._gauges_at = now
        waiting: dict[tuple[str, str], int] = {}
        longest: dict[tuple[str, str], float] = {}
        # (answered within, answered, abandoned late), summed over the label's domains
        counts: dict[tuple[str, str], tuple[int, int, int]] = {}
        states: dict[str, dict[str, int]] = {}
        busy: dict[str, int] = {}
        present: dict[str, int] = {}
        for label in self.labels.values():
            states[label] = {s.name.lower(): 0 for s in m.AgentState}
            busy[label] = present[label] = 0
        for domain, core in self.states.items():
            label = self.labels.label(domain)
            for stats in core.queue_stats(now):
                # the queues of each domain's own policy (a tenant's policy names its own)
                key = (label, self._queue_label(label, stats.queue))
                waiting[key] = waiting.get(key, 0) + stats.waiting + stats.offered
                longest[key] = max(longest.get(key, 0.0), stats.longest_wait)
                within, answered, late = counts.get(key, (0, 0, 0))
                counts[key] = (
                    within + stats.answered_within,
                    answered + stats.answered,
                    late + stats.abandoned_late,
                )
            for agent in core.agent_views():
                states[label][agent.state.name.lower()] += 1
                if agent.state not in (m.AgentState.AWAY, m.AgentState.LOGGED_OUT):
                    present[label] += 1
                    busy[label] += agent.state in (
                        m.AgentState.BUSY,
                        m.AgentState.RESERVED,
                        m.AgentState.WRAP_UP,
                    )
        for gone in self._gauge_series - waiting.keys():  # a queue a policy removed
            for gauge in (self.metrics.waiting, self.metrics.longest_wait):
                with contextlib.suppress(KeyError):
                    gauge.remove(*gone)
            with contextlib.suppress(KeyError):
                self.metrics.service_level.remove(*gone)
        self._gauge_series = set(waiting)
        for (label, queue), count in waiting.items():
            self.metrics.waiting.labels(label, queue).set(count)
            self.metrics.longest_wait.labels(label, queue).set(longest[label, queue])
            level = service_level(*counts[label, queue])
            # None renders as NaN: a dashboard shows a gap, the "below target" alert
            # does not fire on a queue that has answered or failed no one.
            self.metrics.service_level.labels(label, queue).set(
                math.nan if level is None else level
            )
        for label, by_state in states.items():
            for state, n in by_state.items():
                self.metrics.agents.labels(label, state).set(n)
            people = present[label]
            self.metrics.occupancy.labels(label).set(busy[label] / people if people else 0.0)
