"""The services over SASL_SSL (SCRAM-SHA-512, TLS to a CA made at broker setup), each as
its own Kafka user holding only the ACLs of ``services.common.access``: a call's whole
lifecycle still works, and one service cannot read, write or fence another's resources."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    KafkaConnectionError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)
from switchboard.v1 import common_pb2, policy_pb2, policy_pb2_grpc

from services.common.access import ACCESS, acl_rules, operator_rules
from services.common.codec import encode_envelope, new_envelope
from services.common.config import KafkaSettings
from services.common.kafka import InboundRecord, dead_letter_record
from services.common.kafka_connection import connection_options
from services.common.topics import Topics
from services.notifier.gateway_stub import ReferenceGateway
from tests.pki import certificate, load_ca, new_key, write_pem
from tests.scenario import accept, arrive, audit_ok, end, hold, login, offers
from tests.support import (
    KafkaBroker,
    ServiceProcess,
    bearer,
    channel_as,
    committed,
    service_env,
    service_process,
    until,
    wait_for,
)

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]


async def kafka_user(
    kafka: KafkaBroker, topics: Topics, service: str, tmp_path: Path
) -> KafkaSettings:
    """A SCRAM user for ``service`` with exactly its ACLs; its settings as a deployment has them."""
    user = f"{topics.prefix}{service}"
    password = secrets.token_urlsafe(18) + "Zz"  # mixed case, used exactly as written
    await kafka.scram_user(user, password)
    await kafka.allow(user, acl_rules(service, topics, group=user))
    secret = tmp_path / f"{service}.password"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    return KafkaSettings(
        bootstrap_servers=kafka.sasl_ssl_servers,
        topic_prefix=topics.prefix,
        security_protocol="SASL_SSL",
        ssl_ca_file=kafka.ca_file,
        sasl_username=user,
        sasl_password_file=secret,
    )


def secure_env(
    kafka: KafkaBroker, topics: Topics, service: str, secure: KafkaSettings, **extra: str
) -> dict[str, str]:
    return service_env(
        service,
        kafka,
        topics,
        KAFKA__BOOTSTRAP_SERVERS=secure.bootstrap_servers,
        KAFKA__SECURITY_PROTOCOL="SASL_SSL",
        KAFKA__SSL_CA_FILE=str(secure.ssl_ca_file),
        KAFKA__SASL_USERNAME=secure.sasl_username,
        KAFKA__SASL_PASSWORD_FILE=str(secure.sasl_password_file),
        **extra,
    )


async def read_for(consumer: AIOKafkaConsumer, seconds: float) -> list[bytes]:
    """Every value fetched in ``seconds`` (aiokafka logs, not raises, an unauthorized topic)."""
    values: list[bytes] = []
    for _ in range(int(seconds * 2)):
        for records in (await consumer.getmany(timeout_ms=500)).values():
            values.extend(record.value for record in records)
    return values


def stranded(contact_id: str) -> bytes:
    """A Polish caller for a queue no logged-in agent can serve: unroutable, escalated."""
    e = new_envelope("acme", "pbx", event_id=f"arrive-{contact_id}")
    a = e.contact_arrived
    a.contact_id, a.queue, a.channel = contact_id, "billing-pl", common_pb2.CHANNEL_CHAT
    a.customer.name, a.customer.language = "Ola", "pl"
    return encode_envelope(e)


async def test_a_call_runs_its_lifecycle_with_every_service_on_sasl_ssl_and_its_own_acls(
    kafka: KafkaBroker, tmp_path: Path, gateway: tuple[ReferenceGateway, int]
) -> None:
    reference, gateway_port = gateway
    topics = await kafka.fresh_topics()
    processes: list[ServiceProcess] = []
    for service in ("router", "escalation", "notifier"):
        secure = await kafka_user(kafka, topics, service, tmp_path)
        extra = {"GATEWAYS__DEFAULT": f"127.0.0.1:{gateway_port}"} if service == "notifier" else {}
        processes.append(
            service_process(service, secure_env(kafka, topics, service, secure, **extra), tmp_path)
        )
    for process in processes:
        await process.start()
    try:
        await kafka.produce(topics.agent_events, [login("a1")])
        await kafka.produce(topics.contact_events, [arrive("c1")])
        decisions = await wait_for(kafka, topics.routing_decisions, lambda ds: bool(offers(ds)))
        (_, contact, agent, offer_id) = offers(decisions)[0]
        assert (contact, agent) == ("c1", "a1")
        await kafka.produce(topics.agent_events, [accept("a1", "c1", offer_id)])
        await kafka.produce(topics.contact_events, [hold("c1")])
        await until(
            lambda: any(d.notification_id.startswith("hold-c1") for d in reference.delivered),
            what="the customer told about the hold",
        )
        await kafka.produce(topics.contact_events, [end("c1"), stranded("c2")])
        escalated = await wait_for(
            kafka,
            topics.escalations,
            lambda es: any(e.escalation_record.escalation.contact_id == "c2" for e in es),
        )
        assert escalated
        await wait_for(
            kafka,
            topics.routing_decisions,
            lambda ds: any(d.HasField("contact_closed") for d in ds),
        )
        # An operator's policy, written by the router's PolicyService under its own ACLs
        # (its transactional id, the policies topic), read back by its view.
        assert processes[0].grpc_port is not None
        async with channel_as(processes[0].grpc_port, bearer("ops", "router", "operator")) as ch:
            policies = policy_pb2_grpc.PolicyServiceStub(ch)
            applied = await policies.ApplyPolicy(
                policy_pb2.ApplyPolicyRequest(
                    domain="acme",
                    document="[notification]\nposition_min_interval_s = 45\n",
                    comment="quieter",
                )
            )
            assert applied.applied.version == 1
            history = await policies.GetPolicyHistory(
                policy_pb2.GetPolicyHistoryRequest(domain="acme")
            )
            assert [v.version for v in history.versions] == [1]
    finally:
        for process in processes:
            await process.stop()
    for service in ("router", "escalation", "notifier"):
        assert not await committed(kafka, topics.dead_letters(service))
    await audit_ok(kafka, topics)


async def test_a_service_cannot_read_write_or_fence_what_belongs_to_another(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    topics = await kafka.fresh_topics()
    notifier = await kafka_user(kafka, topics, "notifier", tmp_path)
    options: dict[str, Any] = connection_options(notifier)

    # Read the router's state (customers' details and all): not even listed, never fetched.
    await kafka.produce(topics.changelog("router"), [b"a customer's details"], key=b"acme")
    consumer = AIOKafkaConsumer(**options, enable_auto_commit=False, request_timeout_ms=10_000)
    await consumer.start()
    try:
        assert topics.changelog("router") not in await consumer.topics()
        assert topics.notifications in await consumer.topics()
        changelog = [TopicPartition(topics.changelog("router"), p) for p in range(4)]
        consumer.assign(changelog)
        await consumer.seek_to_beginning(*changelog)
        assert await read_for(consumer, seconds=5) == []
    finally:
        await consumer.stop()

    # Forge a routing decision, or a dead letter in the router's name.
    producer = AIOKafkaProducer(**options, request_timeout_ms=10_000)
    await producer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(topics.routing_decisions, b"forged")
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(topics.dead_letters("router"), b"forged")
    finally:
        await producer.stop()

    # Fence the router by taking its transactional id.
    zombie_maker = AIOKafkaProducer(
        **options, transactional_id=f"{topics.prefix}router-0", request_timeout_ms=10_000
    )
    with pytest.raises(TransactionalIdAuthorizationFailed):
        await zombie_maker.start()
    await zombie_maker.stop()

    # Its own topics it may write.
    producer = AIOKafkaProducer(**options, request_timeout_ms=10_000)
    await producer.start()
    try:
        await producer.send_and_wait(topics.notifications, b"allowed")
        await producer.send_and_wait(topics.dead_letters("notifier"), b"allowed")
    finally:
        await producer.stop()


async def test_a_wrong_password_gets_nothing(kafka: KafkaBroker, tmp_path: Path) -> None:
    topics = await kafka.fresh_topics()
    router = await kafka_user(kafka, topics, "router", tmp_path)
    options = connection_options(
        KafkaSettings(
            bootstrap_servers=router.bootstrap_servers,
            security_protocol="SASL_SSL",
            ssl_ca_file=router.ssl_ca_file,
            sasl_username=router.sasl_username,
            sasl_password="not-the-password",
        )
    )
    producer = AIOKafkaProducer(**options, request_timeout_ms=5_000)
    with pytest.raises(KafkaConnectionError):
        await producer.start()
    await producer.stop()


def client_certificate(
    ca_file: Path, common_name: str, directory: Path, *, foreign: bool = False
) -> tuple[Path, Path]:
    """A client certificate for ``common_name``, signed by the broker's CA (or another)."""
    if foreign:
        other = new_key()
        issuer = (certificate("someone-else", other, ca=True).subject, other)
    else:
        issuer = load_ca(ca_file)
    key = new_key()
    return write_pem(directory, common_name, certificate(common_name, key, issuer), key)


async def test_a_service_signs_in_with_its_client_certificate_and_gets_only_its_acls(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    topics = await kafka.fresh_topics()
    user = f"{topics.prefix}notifier"
    await kafka.allow(user, acl_rules("notifier", topics, group=user))
    assert kafka.ca_file is not None
    cert, key = client_certificate(kafka.ca_file, user, tmp_path)
    options = connection_options(
        KafkaSettings(
            bootstrap_servers=kafka.mtls_servers,
            security_protocol="SSL",
            ssl_ca_file=kafka.ca_file,
            ssl_cert_file=cert,
            ssl_key_file=key,
        )
    )
    producer = AIOKafkaProducer(**options, request_timeout_ms=10_000)
    await producer.start()
    try:
        await producer.send_and_wait(topics.notifications, b"allowed")
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(topics.routing_decisions, b"forged")
    finally:
        await producer.stop()

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    stranger_cert, stranger_key = client_certificate(kafka.ca_file, user, foreign, foreign=True)
    stranger = AIOKafkaProducer(
        **connection_options(
            KafkaSettings(
                bootstrap_servers=kafka.mtls_servers,
                security_protocol="SSL",
                ssl_ca_file=kafka.ca_file,
                ssl_cert_file=stranger_cert,
                ssl_key_file=stranger_key,
            )
        ),
        request_timeout_ms=5_000,
    )
    with pytest.raises(KafkaConnectionError):
        await stranger.start()
    await stranger.stop()


async def test_the_operator_user_lists_and_replays_dead_letters_and_nothing_more(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    """`switchboard dlq` and `topics` over SASL_SSL as the operator user of
    services.common.access: every service's dead letters readable, a replay writable to
    contact.events, and neither a decision nor a dead letter forgeable."""
    topics = await kafka.fresh_topics()
    user, password = f"{topics.prefix}operator", secrets.token_urlsafe(18) + "Zz"
    await kafka.scram_user(user, password)
    groups = [f"{topics.prefix}{service}" for service in ACCESS]
    await kafka.allow(user, operator_rules(topics, groups=groups))
    secret = tmp_path / "operator.password"
    secret.write_text(password + "\n")
    secure = KafkaSettings(
        bootstrap_servers=kafka.sasl_ssl_servers,
        topic_prefix=topics.prefix,
        security_protocol="SASL_SSL",
        ssl_ca_file=kafka.ca_file,
        sasl_username=user,
        sasl_password_file=secret,
    )
    refused = InboundRecord(topics.contact_events, 0, 7, b"acme", arrive("c1", queue="nope"), (), 0)
    for service in ("router", "notifier"):
        letter = dead_letter_record(
            topics, refused, "queue 'nope' is not configured", "rejected", service, "e-1"
        )
        await kafka.produce(
            letter.topic, [letter.value or b""], key=letter.key, headers=letter.headers
        )
    env = {
        "SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS": kafka.sasl_ssl_servers,
        "SWITCHBOARD_KAFKA__TOPIC_PREFIX": topics.prefix,
        "SWITCHBOARD_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "SWITCHBOARD_KAFKA__SSL_CA_FILE": str(kafka.ca_file),
        "SWITCHBOARD_KAFKA__SASL_USERNAME": user,
        "SWITCHBOARD_KAFKA__SASL_PASSWORD_FILE": str(secret),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen")]),
    }

    async def switchboard(*args: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.cli",
            *args,
            env=os.environ | env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(process.communicate(), 120)
        return process.returncode or 0, out.decode()

    code, listed = await switchboard("dlq", "list")
    assert code == 0, listed
    assert f"{topics.dead_letters('router')} from {topics.contact_events}: 1 dead letter" in listed
    assert (
        f"{topics.dead_letters('notifier')} from {topics.contact_events}: 1 dead letter" in listed
    )
    code, shown = await switchboard("topics")
    assert code == 0, shown
    assert f"{topics.dead_letters('router')}" in shown
    code, replayed = await switchboard("dlq", "replay", "--all")
    assert code == 0, replayed
    assert replayed.splitlines()[-1] == "1 record sent, 0 skipped"  # refused by two, sent once
    [sent] = await kafka.read_all(topics.contact_events, expect=1)
    assert dict(sent.headers)["dlq.replayed-from"].startswith(
        topics.dead_letters("router").encode()
    )

    producer = AIOKafkaProducer(**connection_options(secure), request_timeout_ms=10_000)
    await producer.start()
    try:
        for forged in (topics.routing_decisions, topics.dead_letters("router")):
            with pytest.raises(TopicAuthorizationFailedError):
                await producer.send_and_wait(forged, b"forged")
    finally:
        await producer.stop()
