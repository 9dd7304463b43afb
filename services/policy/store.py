"""The ``policies`` topic for the PolicyService: a read view of every domain's current
record, and the writer of new ones.

Reading. A :class:`~services.common.read_view.TopicFollower` reads every partition of
``policies`` (compacted, keyed by domain) from the beginning, committed records only, into
a :class:`~services.policy.versions.PolicyBook`. Every router replica keeps one, so any
replica answers for every domain. Before it decides anything a call waits until the view
has read everything committed before the call (read-your-writes across replicas).

Writing, one writer per domain at a time, across replicas. A domain's record is written
in a Kafka transaction whose transactional id is the same on every replica for that
domain (``<group>-policies-<slot>``, the slot a hash of the domain). Starting the
producer (InitProducerId) fences any other replica's producer of that id and completes
or aborts its open transaction; only then does the writer catch up with the topic, check
``expected_version`` against the current version and commit the new record. So two
operators applying to one domain at once through two replicas cannot both write version
N+1: the later one either sees the earlier's committed record (FAILED_PRECONDITION) or
fenced it before it committed (the earlier's call fails ABORTED and wrote nothing).
Within a replica, applies of one slot wait for each other (an asyncio lock). After the
commit the writer reads its record back through the view and answers only once the view
shows it (a later version on top is fine; another record with its number is not).

Each apply makes a producer (a few round trips): applies are rare operator actions.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from aiokafka.errors import KafkaError, ProducerFenced
from prometheus_client import CollectorRegistry, Counter, Gauge

from services.common.codec import decode_envelope, encode_record, new_envelope
from services.common.config import KafkaSettings
from services.common.errors import DecodeError
from services.common.kafka import InboundRecord, make_transactional_producer
from services.common.read_view import TopicFollower
from services.common.topics import Topics
from services.policy.mapping import history_from_proto, history_to_proto
from services.policy.settings import PolicyServiceSettings
from services.policy.versions import History, PolicyBook

__all__ = [
    "POLICIES_TOPIC",
    "WRITER_SLOTS",
    "PolicyMetrics",
    "PolicyStore",
    "StoreUnavailable",
    "WriteAborted",
]

log = structlog.get_logger("router.policies")

#: The topic's base name (``deploy/topics.toml``).
POLICIES_TOPIC = "policies"
#: Transactional ids of the writers: a domain always uses the slot its name hashes to.
WRITER_SLOTS = 16
#: The source named on the records' envelopes.
SOURCE = "router-policy-service"
#: Pause before the view's reader reconnects after a failure, doubling up to the maximum.
RETRY_S, MAX_RETRY_S = 1.0, 30.0


class StoreUnavailable(Exception):
    """The view or Kafka cannot answer now: UNAVAILABLE (nothing was written, unless the
    reason says the outcome is unknown)."""


class WriteAborted(Exception):
    """Another apply of the same domain took over (fenced this one) or wrote this
    version number first: ABORTED, nothing of this call was applied."""


@dataclass(frozen=True)
class PolicyMetrics:
    changes: Counter
    domains: Gauge
    ready: Gauge
    refused_records: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> PolicyMetrics:
        return cls(
            changes=Counter(
                "switchboard_policy_changes_total",
                "PolicyService applies and rollbacks, by outcome (applied, invalid, conflict, "
                "not_found, aborted, unavailable).",
                ["outcome"],
                registry=registry,
            ),
            domains=Gauge(
                "switchboard_policy_view_domains",
                "Domains with a policy version in this router's read view of `policies`.",
                registry=registry,
            ),
            ready=Gauge(
                "switchboard_policy_view_ready",
                "1 once the read view has read the `policies` committed when it started.",
                registry=registry,
            ),
            refused_records=Counter(
                "switchboard_policy_view_refused_total",
                "Records of `policies` the read view did not take (unreadable, stale, "
                "left out past its bounds).",
                ["reason"],
                registry=registry,
            ),
        )


def _history_of(record: InboundRecord) -> History:
    envelope = decode_envelope(record.value, record.headers)
    payload = envelope.WhichOneof("payload")
    if payload != "policy_changed":
        raise DecodeError(f"payload {payload}, not policy_changed")
    return history_from_proto(envelope.policy_changed)


def writer_slot(domain: str) -> int:
    """The writer slot of ``domain``: the same on every replica and after restarts."""
    return zlib.crc32(domain.encode()) % WRITER_SLOTS


class PolicyStore:
    """The read view and the writer (see the module's docstring)."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topics: Topics,
        settings: PolicyServiceSettings,
        metrics: PolicyMetrics | None = None,
        *,
        group: str = "router",
    ) -> None:
        self.kafka = kafka
        self.topic = topics.name(POLICIES_TOPIC)
        self.settings = settings
        self.metrics = metrics
        self.book = PolicyBook(settings.max_domains, settings.max_bytes)
        group = kafka.group_id or group
        self._writer_base = (
            group if group.startswith(topics.prefix) else f"{topics.prefix}{group}"
        ) + "-policies-"
        self.follower = TopicFollower(
            kafka,
            from_start=[self.topic],
            on_record=self.on_record,
            client_id=f"{topics.prefix}router-policies-view",
        )
        self._locks = [asyncio.Lock() for _ in range(WRITER_SLOTS)]

    # -- running ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Follow ``policies`` until ``stop``; a failure is logged and the reader starts
        again from the beginning (calls are UNAVAILABLE meanwhile): routing goes on."""
        stopper = asyncio.create_task(self._stop_on(stop))
        loaded = asyncio.create_task(self._report_loaded())
        pause = RETRY_S
        try:
            while not stop.is_set():
                try:
                    await self.follower.run()
                except Exception as exc:  # noqa: BLE001 - a view must not stop routing
                    log.warning("policies view: reader failed; retrying", error=repr(exc))
                else:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)
                pause = min(pause * 2, MAX_RETRY_S)
        finally:
            stopper.cancel()
            loaded.cancel()

    async def _stop_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.follower.stop()

    async def _report_loaded(self) -> None:
        await self.follower.loaded.wait()
        if self.metrics is not None:
            self.metrics.ready.set(1)

    def on_record(self, record: InboundRecord) -> None:
        """One record of ``policies``: the domain's history, if newer than the one held."""
        if record.key is None or record.value is None:
            self._refused("no_key_or_tombstone")
            return
        domain = record.key.decode("utf-8", "replace")
        try:
            history = _history_of(record)
        except (DecodeError, ValueError) as exc:
            log.warning("policies view: unreadable record skipped", domain=domain, error=str(exc))
            self._refused("unreadable")
            return
        outcome = self.book.put(domain, history, len(record.value))
        if outcome in ("stale", "left out"):
            log.warning(
                "policies view: record not taken",
                domain=domain,
                version=history.current.version,
                why=outcome,
            )
            self._refused(outcome.replace(" ", "_"))
        if self.metrics is not None:
            self.metrics.domains.set(len(self.book))

    def _refused(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.refused_records.labels(reason).inc()

    # -- reading ----------------------------------------------------------------------

    async def caught_up(self) -> None:
        """Return once the view holds everything committed before the call, else
        :class:`StoreUnavailable`."""
        wait_s = self.settings.wait_s
        if not self.follower.loaded.is_set():
            try:
                async with asyncio.timeout(wait_s):
                    await self.follower.loaded.wait()
            except TimeoutError:
                raise StoreUnavailable(
                    "this router is still loading its view of the policies; retry"
                ) from None
        try:
            await self.follower.caught_up(wait_s)
        except (TimeoutError, ConnectionError) as exc:
            raise StoreUnavailable(
                f"could not bring the view of the policies up to date ({exc!r}); retry"
            ) from None

    async def history(self, domain: str) -> History | None:
        """The domain's history as committed now (None: it runs on the configured default).
        :class:`~services.policy.versions.BookIncomplete` if the view cannot tell."""
        await self.caught_up()
        return self.book.get(domain)

    # -- writing ----------------------------------------------------------------------

    async def write(
        self, domain: str, change: Callable[[History | None], History], now: float
    ) -> History:
        """Write ``change(current history)`` as the domain's new record; return it once
        committed and shown by the view. ``change`` raises to refuse (nothing written)."""
        slot = writer_slot(domain)
        async with self._locks[slot]:
            written = await self._write(domain, slot, change, now)
        try:
            await self.caught_up()
        except StoreUnavailable as exc:
            raise StoreUnavailable(
                f"version {written.current.version} of domain {domain!r} was written, but this "
                f"router's view does not show it yet ({exc}): look at the history"
            ) from None
        shown = self.book.get(domain)
        mine = None if shown is None else shown.find(written.current.version)
        if mine != written.current:
            raise WriteAborted(
                f"version {written.current.version} of domain {domain!r} was written by "
                "another apply; the services refuse this one as stale: look at the history"
            )
        return written

    async def _write(
        self, domain: str, slot: int, change: Callable[[History | None], History], now: float
    ) -> History:
        producer = make_transactional_producer(self.kafka, f"{self._writer_base}{slot}")
        try:
            async with asyncio.timeout(self.settings.wait_s):
                await producer.start()  # fences this domain's writer on other replicas
        except (TimeoutError, KafkaError) as exc:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise StoreUnavailable(f"cannot reach Kafka to write the policy ({exc!r})") from None
        begun = False
        try:
            await self.caught_up()
            proposed = change(self.book.get(domain))  # may refuse: nothing is written
            record = history_to_proto(proposed)
            written = history_from_proto(record)  # exactly what readers will see
            envelope = new_envelope(domain, SOURCE, occurred_at=now)
            envelope.policy_changed.CopyFrom(record)
            value, headers = encode_record(envelope)
            if len(value) > self.kafka.max_record_bytes:
                raise StoreUnavailable(
                    f"the record would be {len(value)} bytes, over kafka.max_record_bytes"
                )
            try:
                async with asyncio.timeout(self.settings.wait_s):
                    await producer.begin_transaction()
                    begun = True
                    await producer.send_and_wait(
                        self.topic, value, key=domain.encode(), headers=list(headers)
                    )
                    await producer.commit_transaction()
                    begun = False
            except ProducerFenced:
                raise WriteAborted(
                    f"another apply of domain {domain!r} (or of one sharing its writer) "
                    "took over on another replica; nothing of this one was applied: retry"
                ) from None
            except (TimeoutError, KafkaError) as exc:
                raise StoreUnavailable(
                    f"writing the policy failed ({exc!r}); it may or may not be applied: "
                    "look at the history before retrying"
                ) from None
            log.info(
                "policy written",
                domain=domain,
                version=written.current.version,
                author=written.current.author,
                restores_version=written.current.restores_version,
            )
            return written
        finally:
            if begun:  # an open transaction would hold the partition's readers back
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(producer.abort_transaction(), self.settings.wait_s)
            with contextlib.suppress(Exception):
                await producer.stop()
