"""Any instance answers any manager: a read view of every domain, and commands that travel
to the domain's owner through Kafka (CQRS: the log is the source of truth).

Reads. :class:`ReadModel` follows every partition of the compacted ``escalations`` topic
(committed records only, no consumer group) into the pure
:class:`~services.escalation.domain.read_view.EscalationReadView`, and streams each change
it applies to the open Watch streams. Watch and ListOpen answer from it, for every
domain, whichever instance owns which. It follows the compacted ``policies`` topic too:
which teams a manager sees is their escalation's domain's policy's rule
(:class:`~services.escalation.domain.scopes.DomainPolicies`).

Commands. :class:`CommandSender` writes a manager's Acknowledge, AddNote or Resolve as an
``EscalationCommand`` on ``escalation.commands``, keyed by domain: it lands on the
domain's partition, and the instance owning that partition reads it in its consume loop,
in order with the domain's events, and applies it in that partition's transaction,
together with an ``EscalationCommandResult`` on ``escalation.replies``. The sender
follows ``escalation.replies`` (from its end at start) and learns the outcome when the
result with its command id arrives: read_committed, so the change is committed too. The
result names the escalation's new version (no customer data on that topic); the caller
gets the escalation once this instance's read view shows that version, so their next
ListOpen here sees it. No answer by the command's deadline is a timeout, and
the owner does not apply a command it reads after that deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from aiokafka import AIOKafkaProducer

from services.common.clock import Clock, SystemClock
from services.common.codec import decode_envelope, encode_envelope, new_envelope
from services.common.config import KafkaSettings
from services.common.errors import DecodeError, RejectedEvent
from services.common.kafka import InboundRecord
from services.common.kafka_connection import connection_options
from services.common.policy_input import POLICIES_TOPIC, policy_input
from services.common.read_view import TopicFollower
from services.common.topics import Topics
from services.escalation.adapters.mapping import (
    command_to_proto,
    escalation_from_proto,
    outcome_from_proto,
)
from services.escalation.adapters.watchers import Watchers
from services.escalation.domain import PolicyError
from services.escalation.domain import commands as c
from services.escalation.domain import model as m
from services.escalation.domain.policy import policy_in_document
from services.escalation.domain.read_view import EscalationReadView, ReadViewFull
from services.escalation.domain.scopes import DomainPolicies
from services.escalation.metrics import EscalationMetrics

__all__ = [
    "COMMANDS_TOPIC",
    "REPLIES_TOPIC",
    "CommandSender",
    "CommandTimedOut",
    "ReadModel",
    "TooManyCommands",
    "ViewUnavailable",
]

log = structlog.get_logger("escalation")

#: Base names of the command topic and its answers (``deploy/topics.toml``).
COMMANDS_TOPIC = "escalation.commands"
REPLIES_TOPIC = "escalation.replies"


class ViewUnavailable(Exception):
    """The read view cannot answer: still loading, stopped, or incomplete."""


class TooManyCommands(Exception):
    """``commands.max_in_flight`` commands are already waiting for their answers."""


class CommandTimedOut(Exception):
    """No answer from the domain's owner before the command's deadline."""


@dataclass
class CommandSender:
    """Sends commands to the domains' owners and waits for their committed answers."""

    topics: Topics
    kafka: KafkaSettings
    metrics: EscalationMetrics
    max_in_flight: int = 1_000
    clock: Clock = field(default_factory=SystemClock)
    _producer: AIOKafkaProducer | None = None
    _pending: dict[str, asyncio.Future[c.CommandAnswer]] = field(default_factory=dict)

    @property
    def topic(self) -> str:
        return self.topics.name(COMMANDS_TOPIC)

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            **connection_options(self.kafka),
            client_id=f"{self.topics.prefix}escalation-commands",
            enable_idempotence=True,
            acks="all",
            linger_ms=0,
            request_timeout_ms=self.kafka.request_timeout_ms,
        )
        await self._producer.start()

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        for waiting in self._pending.values():
            if not waiting.done():
                waiting.set_exception(ViewUnavailable("this instance is shutting down"))
        if producer is not None:
            await producer.stop()

    def __len__(self) -> int:
        return len(self._pending)

    async def send(
        self,
        domain: str,
        command: c.ManagerCommand,
        requester: c.Requester,
        wait_s: float,
    ) -> c.CommandAnswer:
        """Send ``command`` to the owner of ``domain`` and return its committed answer.

        Raises :class:`TooManyCommands`, :class:`CommandTimedOut` (nothing came within
        ``wait_s``: the owner drops the command once past its deadline) or
        :class:`ViewUnavailable` (Kafka refused the command: nothing was sent).
        """
        if len(self._pending) >= self.max_in_flight:
            raise TooManyCommands(
                f"{self.max_in_flight} commands are waiting for their answers "
                "(commands.max_in_flight); try again shortly"
            )
        producer = self._producer
        if producer is None:
            raise ViewUnavailable("this instance is not ready to send commands yet; retry")
        command_id = uuid.uuid4().hex
        now = self.clock.now()
        envelope = new_envelope(domain, "escalation", event_id=command_id, occurred_at=now)
        envelope.escalation_command.CopyFrom(command_to_proto(command, requester, now + wait_s))
        answer: asyncio.Future[c.CommandAnswer] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = answer
        self.metrics.commands_waiting.set(len(self._pending))
        started = time.monotonic()
        try:
            async with asyncio.timeout(wait_s):
                try:
                    await producer.send_and_wait(
                        self.topic, encode_envelope(envelope), key=domain.encode()
                    )
                except TimeoutError:
                    raise
                except Exception as exc:
                    self.metrics.commands.labels("unavailable").inc()
                    raise ViewUnavailable(f"could not send the command: {exc!r}; retry") from exc
                outcome = await answer
        except TimeoutError:
            self.metrics.commands.labels("timeout").inc()
            raise CommandTimedOut(
                f"no answer from the instance owning domain {domain!r} within {wait_s:.1f} s "
                "(it may be restarting or taking over); it does not apply the command after "
                "that, so check the escalation before retrying"
            ) from None
        finally:
            self._pending.pop(command_id, None)
            self.metrics.commands_waiting.set(len(self._pending))
        self.metrics.commands.labels(outcome.status.slug).inc()
        log.info(
            "command answered",
            command_id=command_id,
            domain=domain,
            status=outcome.status.slug,
            seconds=round(time.monotonic() - started, 3),
        )
        return outcome

    def on_reply(self, record: InboundRecord) -> None:
        """An answer on ``escalation.replies``: settles the waiting command, if it is ours."""
        try:
            envelope = decode_envelope(record.value, record.headers)
        except DecodeError as exc:
            log.warning("unreadable command answer skipped", error=exc.reason)
            return
        if envelope.WhichOneof("payload") != "escalation_command_result":
            return
        result = envelope.escalation_command_result
        waiting = self._pending.get(result.command_id)
        if waiting is None or waiting.done():
            return  # another instance's command, or one that gave up waiting
        try:
            outcome = outcome_from_proto(result)
        except ValueError as exc:
            waiting.set_exception(ViewUnavailable(f"unreadable answer from the owner: {exc}"))
            return
        waiting.set_result(outcome)


@dataclass
class ReadModel:
    """Every domain's escalations on this instance, the Watch streams fed from them, and
    the command answers read from the same consumer."""

    topics: Topics
    kafka: KafkaSettings
    metrics: EscalationMetrics
    commands: CommandSender
    #: Every domain's escalation policy as applied (whose teams a manager sees).
    policies: DomainPolicies
    view: EscalationReadView = field(default_factory=EscalationReadView)
    watchers: Watchers = field(default_factory=Watchers)
    follower: TopicFollower = field(init=False)
    _versions: dict[str, list[tuple[int, asyncio.Future[None]]]] = field(default_factory=dict)
    _stopped: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.follower = TopicFollower(
            self.kafka,
            from_start=[self.topics.escalations, self.topics.name(POLICIES_TOPIC)],
            from_end=[self.topics.name(REPLIES_TOPIC)],
            on_record=self.on_record,
            client_id=f"{self.topics.prefix}escalation-view",
        )

    # -- running ----------------------------------------------------------------------------

    async def run(self, on_failure: Callable[[BaseException], None]) -> None:
        """Follow the topics until :meth:`stop`; a failure is handed to ``on_failure`` (the
        service stops: an instance without its view must not keep answering)."""
        try:
            await self.commands.start()
            await self.follower.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("read view failed")
            on_failure(exc)
        finally:
            self._stopped.set()
            await self.commands.stop()

    def stop(self) -> None:
        self.follower.stop()

    # -- reads ------------------------------------------------------------------------------

    async def ready(self, wait_s: float) -> None:
        """Return once the view is loaded and complete, else :class:`ViewUnavailable`."""
        if not self.follower.loaded.is_set():
            try:
                async with asyncio.timeout(wait_s):
                    await self.follower.loaded.wait()
            except TimeoutError:
                raise ViewUnavailable(
                    "this instance is still loading its read view of the escalations; retry"
                ) from None
        if self._stopped.is_set():
            raise ViewUnavailable("this instance's read view has stopped; retry elsewhere")
        if not self.view.complete:
            raise ReadViewFull(
                f"the read view holds {self.view.max_escalations} escalations, its most "
                "(view.max_escalations): raise it and restart this instance"
            )
        if not self.policies.complete:
            raise ReadViewFull(
                f"the read view holds the policies of {self.policies.max_domains} domains, "
                "its most (kafka.max_domains): raise it and restart this instance"
            )

    async def caught_up(self, wait_s: float) -> None:
        """Everything committed to the topic before this call is in the view (or
        :class:`ViewUnavailable`)."""
        try:
            await self.follower.caught_up(wait_s)
        except (TimeoutError, ConnectionError) as exc:
            raise ViewUnavailable(f"could not bring the read view up to date: {exc!r}") from None

    async def showing(self, escalation_id: str, version: int, wait_s: float) -> bool:
        """Wait (at most ``wait_s``) until the view shows ``escalation_id`` at ``version``
        or later; whether it does."""
        if self.view.has_version(escalation_id, version):
            return True
        waiting: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._versions.setdefault(escalation_id, [])
        waiters.append((version, waiting))
        try:
            async with asyncio.timeout(max(wait_s, 0.0)):
                await waiting
        except TimeoutError:
            return False
        finally:
            with contextlib.suppress(ValueError):
                waiters.remove((version, waiting))
            if not waiters:
                self._versions.pop(escalation_id, None)
        return True

    # -- records ----------------------------------------------------------------------------

    def on_record(self, record: InboundRecord) -> None:
        if record.topic == self.topics.escalations:
            self._on_escalation(record)
        elif record.topic == self.topics.name(POLICIES_TOPIC):
            self._on_policy(record)
        else:
            self.commands.on_reply(record)

    def _on_policy(self, record: InboundRecord) -> None:
        """A domain's new policy: its teams decide who sees its escalations from now on.
        What the owner refuses (stale, unreadable) is skipped here too, with a log line
        (the owner's dead letter says why)."""
        if record.value is None:
            return
        try:
            envelope = decode_envelope(record.value, record.headers)
            changed = policy_input(envelope, POLICIES_TOPIC)
            if changed is None:
                return
            policy = policy_in_document(changed.document, self.policies.default)
        except (DecodeError, RejectedEvent, PolicyError) as exc:
            log.warning("read view: policy record skipped", offset=record.offset, error=str(exc))
            self.metrics.view_refused.labels("unreadable").inc()
            return
        if self.policies.apply(changed.domain, changed.version, policy):
            log.info(
                "read view: policy applied", domain=changed.domain, policy_version=changed.version
            )

    def _on_escalation(self, record: InboundRecord) -> None:
        if record.key is None:
            return
        escalation_id = record.key.decode("utf-8", "replace")
        change: m.EscalationChange | None = None
        if record.value is not None:
            try:
                envelope = decode_envelope(record.value, record.headers)
                proto = envelope.escalation_record
                escalation = escalation_from_proto(proto.escalation)
            except (DecodeError, ValueError) as exc:
                log.warning(
                    "read view: unreadable escalation record skipped",
                    escalation_id=escalation_id,
                    offset=record.offset,
                    error=str(exc),
                )
                self.metrics.view_refused.labels("unreadable").inc()
                return
            change = m.EscalationChange(_kind(proto.kind), escalation)
        try:
            applied = self.view.apply(escalation_id, change)
        except ReadViewFull as exc:
            full = str(exc)
        else:
            full = ""
        if full:
            log.error(
                "read view full: escalation left out", escalation_id=escalation_id, error=full
            )
            self.metrics.view_refused.labels("full").inc()
            return
        self.metrics.view_escalations.set(len(self.view))
        if applied is not None and self.follower.loaded.is_set():
            self.watchers.publish(applied)
        self._wake(escalation_id)

    def _wake(self, escalation_id: str) -> None:
        for version, waiting in self._versions.get(escalation_id, ()):
            if not waiting.done() and self.view.has_version(escalation_id, version):
                waiting.set_result(None)


def _kind(number: int) -> m.EscalationChangeKind:
    """The change's kind; one this build does not know is streamed as an update (the
    state is the escalation, as a restore reads it, whatever the kind)."""
    try:
        return m.EscalationChangeKind(number)
    except ValueError:
        return m.EscalationChangeKind.UPDATED
