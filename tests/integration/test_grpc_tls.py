"""TLS and mTLS on a real service (the notifier, production profile): a client certificate
the configuration grants is an identity, a token on the same connection decides instead,
and plaintext, a missing or foreign client certificate, or an unknown one get nothing."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from switchboard.v1 import common_pb2, notification_pb2, notification_pb2_grpc

from services.common.config import GrpcClientSettings
from services.common.grpc_client import open_channel
from tests.pki import certificate, new_key, write_pem
from tests.support import ISSUER as TEST_ISSUER
from tests.support import (
    ROOT,
    KafkaBroker,
    ServiceProcess,
    bearer,
    free_port,
    jwks_file,
    service_env,
)

pytestmark = pytest.mark.kafka


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path  # signed by the same CA, a name no grant knows
    stranger_key: Path
    foreign_cert: Path  # the granted name, but signed by another CA
    foreign_key: Path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca_key, other_ca_key = new_key(), new_key()
    ca = certificate("test-ca", ca_key, ca=True)
    ca_path, _ = write_pem(tmp_path, "ca", ca, ca_key)
    issuer = (ca.subject, ca_key)
    other = (certificate("other-ca", other_ca_key, ca=True).subject, other_ca_key)
    server_key, client_key, stranger_key, foreign_key = new_key(), new_key(), new_key(), new_key()
    return Pki(
        ca_path,
        *write_pem(
            tmp_path,
            "server",
            certificate("localhost", server_key, issuer, server=True),
            server_key,
        ),
        *write_pem(
            tmp_path, "client", certificate("crm.switchboard.svc", client_key, issuer), client_key
        ),
        *write_pem(
            tmp_path,
            "stranger",
            certificate("nobody.switchboard.svc", stranger_key, issuer),
            stranger_key,
        ),
        *write_pem(
            tmp_path, "foreign", certificate("crm.switchboard.svc", foreign_key, other), foreign_key
        ),
    )


def notify() -> notification_pb2.NotifyRequest:
    request = notification_pb2.NotifyRequest(
        request_id="r1",
        contact_id="c1",
        channel=common_pb2.CHANNEL_SMS,
        text="Your callback is at 3",
    )
    request.customer.name, request.customer.phone = "Anna", "+48600123456"
    return request


async def serving(target: str, settings: GrpcClientSettings, process: ServiceProcess) -> None:
    """Poll the TLS health endpoint (the support helper's probe is plaintext)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    async with open_channel(target, settings) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            assert process.process is None or process.process.returncode is None, "it exited"
            try:
                reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            assert loop.time() < deadline, "never served over TLS"
            await asyncio.sleep(0.2)


async def test_mtls_identities_and_tls_refusals_on_a_production_profile_server(
    kafka: KafkaBroker, tmp_path: Path, pki: Pki
) -> None:
    topics = await kafka.fresh_topics()
    config = tmp_path / "notifier.toml"
    config.write_text(
        (ROOT / "deploy" / "config" / "notifier.toml").read_text()
        + f"""
[identity]
profile = "production"
[identity.jwt]
jwks_file = "{jwks_file()}"
audience = "switchboard-notifier"
issuer = "{TEST_ISSUER.issuer}"
[identity.certificates."crm.switchboard.svc"]
roles = ["service"]
domains = ["*"]
"""
    )
    env = service_env("notifier", kafka, topics) | {
        "SWITCHBOARD_CONFIG": str(config),
        "SWITCHBOARD_IDENTITY__PROFILE": "production",
        "SWITCHBOARD_GRPC__TLS_CERT_FILE": str(pki.server_cert),
        "SWITCHBOARD_GRPC__TLS_KEY_FILE": str(pki.server_key),
        "SWITCHBOARD_GRPC__TLS_CLIENT_CA_FILE": str(pki.ca),
    }
    port, probe_port = free_port(), free_port()
    notifier = ServiceProcess(
        "services.notifier",
        env=env
        | {"SWITCHBOARD_GRPC__PORT": str(port), "SWITCHBOARD_GRPC__HEALTH_PORT": str(probe_port)},
        log_path=str(tmp_path / "notifier.log"),
        grpc_port=port,
    )
    target = f"localhost:{port}"
    client = GrpcClientSettings(
        tls_ca_file=pki.ca, tls_cert_file=pki.client_cert, tls_key_file=pki.client_key
    )
    await notifier.start(wait_healthy=False)
    try:
        await serving(target, client, notifier)
        # Kubernetes' probes: plaintext health on its own port, and nothing else there.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{probe_port}") as probe:
            health = await health_pb2_grpc.HealthStub(probe).Check(health_pb2.HealthCheckRequest())
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.aio.AioRpcError) as elsewhere:
                await notification_pb2_grpc.NotifierServiceStub(probe).Notify(notify())
            assert elsewhere.value.code() == grpc.StatusCode.UNIMPLEMENTED
        # The granted certificate is the caller: no token needed.
        async with open_channel(target, client) as channel:
            stub = notification_pb2_grpc.NotifierServiceStub(channel)
            reply = await stub.Notify(notify(), timeout=10)
            assert reply.notification_id == "direct-r1:direct"
            # A token on the same connection decides instead (here: the wrong role).
            with pytest.raises(grpc.aio.AioRpcError) as token_decides:
                await stub.Notify(notify(), metadata=bearer("piotr", "notifier", "manager"))
            assert token_decides.value.code() == grpc.StatusCode.PERMISSION_DENIED

        refusals = {
            "a certificate no grant names": (
                GrpcClientSettings(
                    tls_ca_file=pki.ca,
                    tls_cert_file=pki.stranger_cert,
                    tls_key_file=pki.stranger_key,
                ),
                grpc.StatusCode.UNAUTHENTICATED,
            ),
            "no client certificate": (
                GrpcClientSettings(tls_ca_file=pki.ca),
                grpc.StatusCode.UNAVAILABLE,
            ),
            "a certificate from another CA": (
                GrpcClientSettings(
                    tls_ca_file=pki.ca, tls_cert_file=pki.foreign_cert, tls_key_file=pki.foreign_key
                ),
                grpc.StatusCode.UNAVAILABLE,
            ),
        }
        for name, (settings, code) in refusals.items():
            async with open_channel(target, settings) as channel:
                stub = notification_pb2_grpc.NotifierServiceStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.Notify(notify(), timeout=10)
                assert refused.value.code() == code, name
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as plaintext:
            stub = notification_pb2_grpc.NotifierServiceStub(plaintext)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Notify(
                    notify(), metadata=bearer("crm", "notifier", "service"), timeout=10
                )
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await notifier.stop()


async def test_a_production_server_without_tls_refuses_to_start(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    topics = await kafka.fresh_topics()
    env = service_env("notifier", kafka, topics) | {"SWITCHBOARD_IDENTITY__PROFILE": "production"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.notifier",
        env=os.environ | env,
        cwd=ROOT,
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert "grpc.tls_cert_file: required" in stderr.decode()
