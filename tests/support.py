"""Test support shared by fixtures and tests: broker and gRPC handles, polling with a deadline."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord
from grpc_health.v1 import health_pb2, health_pb2_grpc
from switchboard.v1.envelope_pb2 import Envelope

from services.common.access import AclRule, acl_command_args
from services.common.codec import decode_envelope
from services.common.config import KafkaSettings
from services.common.errors import DecodeError
from services.common.provision import ensure_topics
from services.common.topics import Topics, load_topic_specs
from services.launcher.demo_credentials import AUDIENCES, DemoIssuer

__all__ = [
    "FUZZ_INPUTS",
    "GrpcServer",
    "KafkaBroker",
    "PrivateBroker",
    "ServiceProcess",
    "free_port",
    "service_env",
    "service_process",
    "until",
    "wait_serving",
]


async def until(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Poll ``predicate`` until true or fail after ``timeout`` s (for effects with no signal)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"not true within {timeout} s: {what or predicate}")
        await asyncio.sleep(0.02)


#: ``KafkaBroker.produce``'s default: key each record by its envelope's domain.
DOMAIN_KEY = b"\x00domain-of-the-envelope"


def _domain_of(value: bytes, headers: Sequence[tuple[str, bytes]]) -> bytes:
    """The envelope's domain as a record key (b"default" if the bytes are no envelope)."""
    try:
        return decode_envelope(value, tuple(headers)).domain.encode() or b"default"
    except DecodeError:
        return b"default"


@dataclass
class KafkaBroker:
    """The running broker, and helpers to give each test its own topics."""

    bootstrap_servers: str
    #: The SASL_SSL (SCRAM-SHA-512) listener, where ACLs apply, and the CA it trusts.
    sasl_ssl_servers: str = ""
    #: The SSL listener asking for client certificates (mTLS; the CN is the user).
    mtls_servers: str = ""
    ca_file: Path | None = None
    #: What ``kafka.sh`` needs to address this broker (port, data dir).
    script_env: dict[str, str] = field(default_factory=dict)

    async def kafka_sh(self, *args: str) -> None:
        """Run ``deploy/kafka/kafka.sh`` against this broker (users, ACLs)."""
        process = await asyncio.create_subprocess_exec(
            str(KAFKA_SCRIPT),
            *args,
            env=os.environ | self.script_env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await process.communicate()
        if process.returncode != 0:
            raise AssertionError(f"kafka.sh {args[0]} failed: {stderr.decode()[-2000:]}")

    async def scram_user(self, name: str, password: str) -> None:
        await self.kafka_sh("scram-user", name, password)

    async def allow(self, principal: str, rules: Sequence[AclRule]) -> None:
        for args in acl_command_args(principal, rules):
            await self.kafka_sh("acl", *args)

    def settings(self, topics: Topics, **overrides: object) -> KafkaSettings:
        return KafkaSettings(
            bootstrap_servers=self.bootstrap_servers, topic_prefix=topics.prefix, **overrides
        )

    async def fresh_topics(self) -> Topics:
        """Provision every topic of deploy/topics.toml under a prefix unique to the caller."""
        topics = Topics(prefix=f"t{uuid.uuid4().hex[:10]}.")
        await ensure_topics(self.bootstrap_servers, load_topic_specs(prefix=topics.prefix))
        return topics

    async def produce(
        self,
        topic: str,
        values: Sequence[bytes],
        key: bytes | None = DOMAIN_KEY,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """Publish as a telephony system must: by default each record is keyed by its
        envelope's domain (murmur2, the Java client's partitioner), so it lands on the
        domain's partition; pass ``key`` to publish otherwise."""
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers, acks="all")
        await producer.start()
        try:
            for value in values:
                record_key = _domain_of(value, headers) if key is DOMAIN_KEY else key
                await producer.send_and_wait(topic, value, key=record_key, headers=list(headers))
        finally:
            await producer.stop()

    async def read_all(
        self, topic: str, *, expect: int, timeout: float = 20.0, committed_only: bool = True
    ) -> list[ConsumerRecord[bytes, bytes]]:
        """Read ``topic`` from the start until ``expect`` records arrived or ``timeout`` passed."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed" if committed_only else "read_uncommitted",
        )
        await consumer.start()
        records: list[ConsumerRecord[bytes, bytes]] = []
        try:
            partitions = consumer.partitions_for_topic(topic) or set()
            while not partitions:
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(topic) or set()
            consumer.assign([TopicPartition(topic, p) for p in partitions])
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while len(records) < expect and loop.time() < deadline:
                batch = await consumer.getmany(timeout_ms=100)
                for recs in batch.values():
                    records.extend(recs)
        finally:
            await consumer.stop()
        return records


@dataclass
class GrpcServer:
    """A started gRPC server on loopback and a channel to it."""

    server: grpc.aio.Server
    port: int
    channel: grpc.aio.Channel


def free_port() -> int:
    """A TCP port nobody listens on right now (for services started as processes)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_serving(port: int, timeout: float = 60.0) -> None:
    """Until the gRPC health service on ``port`` says SERVING (the loop joined, state restored)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if loop.time() > deadline:
                raise AssertionError(f"port {port} not SERVING within {timeout} s")
            await asyncio.sleep(0.05)


@dataclass
class ServiceProcess:
    """A service started as a real process (``python -m module``), as in production.

    Fault tests kill it with SIGKILL and start it again; its log goes to ``log_path``.
    """

    module: str
    env: dict[str, str]
    log_path: str
    args: tuple[str, ...] = ()
    grpc_port: int | None = None
    process: asyncio.subprocess.Process | None = None

    async def start(self, *, wait_healthy: bool = True, timeout: float = 60.0) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115, ASYNC230 - handed to the child; tiny
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            self.module,
            *self.args,
            env={**os.environ, **self.env},
            stdout=log,
            stderr=log,
        )
        log.close()
        if wait_healthy and self.grpc_port is not None:
            await self.wait_serving(timeout)

    async def wait_serving(self, timeout: float = 60.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.grpc_port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                if self.process is not None and self.process.returncode is not None:
                    raise AssertionError(
                        f"{self.module} exited with {self.process.returncode}; see {self.log_path}"
                    )
                try:
                    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
                if loop.time() > deadline:
                    raise AssertionError(
                        f"{self.module} not SERVING within {timeout} s; see {self.log_path}"
                    )
                await asyncio.sleep(0.1)

    async def kill(self) -> None:
        """SIGKILL: no graceful shutdown, no final commit (a crash)."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    def pause(self) -> None:
        """SIGSTOP: the process freezes mid-whatever (a GC pause, a VM stall), sockets open."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT: a paused process carries on where it froze, unaware time passed."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGCONT)

    async def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait (graceful shutdown); SIGKILL if it does not finish in time."""
        if self.process is None or self.process.returncode is not None:
            return None if self.process is None else self.process.returncode
        self.process.terminate()
        self.process.send_signal(signal.SIGCONT)  # a paused process must run to handle it
        try:
            return await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            await self.kill()
            return None


ROOT = Path(__file__).resolve().parents[1]
#: Bad inputs fed to the services by tests/property/test_bad_input.py, per service
#: (printed in pytest's terminal summary by tests/conftest.py).
FUZZ_INPUTS: Counter[str] = Counter()
KAFKA_SCRIPT = ROOT / "deploy" / "kafka" / "kafka.sh"


# --- identity: the tests' own identity provider ----------------------------------------

#: One signing key for the session; services trust its JWKS (as deployments trust an IdP's).
ISSUER = DemoIssuer(issuer="switchboard-tests")


@functools.cache
def jwks_file() -> Path:
    directory = Path(tempfile.mkdtemp(prefix="switchboard-jwks-"))
    path = directory / "jwks.json"
    path.write_text(json.dumps(ISSUER.jwks()))
    return path


def identity_env(server: str) -> dict[str, str]:
    """Environment for a server (router, escalation, notifier, gateway) trusting ISSUER."""
    return {
        "SWITCHBOARD_IDENTITY__PROFILE": "demo",  # plaintext gRPC on loopback
        "SWITCHBOARD_IDENTITY__JWT__JWKS_FILE": str(jwks_file()),
        "SWITCHBOARD_IDENTITY__JWT__AUDIENCE": AUDIENCES[server],
        "SWITCHBOARD_IDENTITY__JWT__ISSUER": ISSUER.issuer,
    }


@functools.cache
def services_token_file() -> Path:
    """The services' own token (role ``service``), as the notifier presents it to gateways."""
    path = jwks_file().parent / "services.jwt"
    token = ISSUER.mint(
        "switchboard-services",
        audience=[AUDIENCES["gateway"], AUDIENCES["notifier"]],
        roles=["service"],
        ttl_s=7 * 24 * 3600,
    )
    path.write_text(token)
    return path


def gateway_client_env() -> dict[str, str]:
    """The notifier's gateway client on loopback: plaintext, with the services' token."""
    return {
        "SWITCHBOARD_GATEWAYS__CREDENTIALS__PLAINTEXT": "true",
        "SWITCHBOARD_GATEWAYS__CREDENTIALS__TOKEN_FILE": str(services_token_file()),
    }


def bearer(
    subject: str,
    server: str,
    *roles: str,
    teams: Sequence[str] = (),
    domains: Sequence[str] = ("*",),
    **claims: object,
) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying a fresh token of ``subject`` for ``server``."""
    token = ISSUER.mint(
        subject, audience=AUDIENCES[server], roles=roles, teams=teams, domains=domains, **claims
    )
    return (("authorization", f"Bearer {token}"),)


class CallsAs(grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    """A client interceptor adding one caller's ``authorization`` to every call."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def _details(self, details: Any) -> Any:
        return details._replace(metadata=(*(details.metadata or ()), *self._metadata))

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


def channel_as(port: int, metadata: tuple[tuple[str, str], ...]) -> grpc.aio.Channel:
    """A loopback channel whose every call carries ``metadata`` (see :func:`bearer`)."""
    return grpc.aio.insecure_channel(f"127.0.0.1:{port}", interceptors=[CallsAs(metadata)])


def service_env(name: str, kafka: KafkaBroker, topics: Topics, **extra: str) -> dict[str, str]:
    """Environment for ``python -m services.<name>`` on this test's private topics.

    ``extra`` uses the services' own names, without the prefix:
    ``service_env("router", kafka, topics, INSTANCE="a")``.
    """
    return (
        identity_env(name)
        | (gateway_client_env() if name == "notifier" else {})
        | {
            "SWITCHBOARD_CONFIG": str(ROOT / "deploy" / "config" / f"{name}.toml"),
            "SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "SWITCHBOARD_KAFKA__TOPIC_PREFIX": topics.prefix,
            "SWITCHBOARD_KAFKA__GROUP_ID": f"{topics.prefix}{name}",
            "SWITCHBOARD_INSTANCE": f"{topics.prefix}{name}",
            "SWITCHBOARD_GRPC__PORT": "0",
            "SWITCHBOARD_METRICS__PORT": "0",
            "SWITCHBOARD_LOG__FORMAT": "json",
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen")]),
        }
        | {f"SWITCHBOARD_{key}": value for key, value in extra.items()}
    )


def service_process(
    name: str, env: dict[str, str], logs: Path, *, label: str = "", module: str = ""
) -> ServiceProcess:
    """A service as a real process with its gRPC port chosen here (to health-check it)."""
    port = free_port()
    return ServiceProcess(
        module=module or f"services.{name}",
        env=env | {"SWITCHBOARD_GRPC__PORT": str(port)},
        log_path=str(logs / f"{label or name}.log"),
        grpc_port=port,
    )


@dataclass
class PrivateBroker(KafkaBroker):
    """A broker of the test's own (own port, own data), which the test may stop and restart."""

    port: int = 0
    controller_port: int = 0
    sasl_ssl_port: int = field(default_factory=lambda: free_port())
    mtls_port: int = field(default_factory=lambda: free_port())
    data_dir: Path = Path()

    def _script(self, command: str) -> None:
        env = os.environ | {
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "KAFKA_SASL_SSL_PORT": str(self.sasl_ssl_port),
            "KAFKA_MTLS_PORT": str(self.mtls_port),
            "KAFKA_DATA_DIR": str(self.data_dir),
        }
        result = subprocess.run(
            [str(KAFKA_SCRIPT), command], env=env, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise AssertionError(f"kafka.sh {command} failed: {result.stderr[-2000:]}")

    async def start(self) -> None:
        await asyncio.to_thread(self._script, "up")

    async def stop(self) -> None:
        await asyncio.to_thread(self._script, "down")


async def committed(kafka: KafkaBroker, topic: str) -> list[Envelope]:
    """Every committed record of ``topic``, decoded."""
    records = await kafka.read_all(topic, expect=10**9, timeout=0.5)
    return [decode_envelope(r.value, r.headers) for r in records]


async def wait_for(
    kafka: KafkaBroker,
    topic: str,
    predicate: Callable[[list[Envelope]], bool],
    timeout: float = 60.0,
    what: str = "",
) -> list[Envelope]:
    """Poll the topic's committed records until ``predicate`` holds (or fail, saying what was seen)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        seen = await committed(kafka, topic)
        if predicate(seen):
            return seen
        if loop.time() > deadline:
            kinds = Counter(e.WhichOneof("payload") for e in seen)
            raise AssertionError(f"{what or topic}: not within {timeout} s; saw {dict(kinds)}")
