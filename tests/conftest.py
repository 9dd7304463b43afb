"""One fixture per real dependency: ``kafka`` (a real broker) and ``grpc_server`` (loopback).

The broker is the project's own (``deploy/kafka/kafka.sh``): reused if one already
answers on ``KAFKA_PORT`` (default 9092), otherwise started once for the session and
stopped at its end. Each test gets its own topic prefix, so tests never see each
other's records. With ``REQUIRE_KAFKA_TESTS=1`` (CI) a skipped broker test fails.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from switchboard.v1 import notification_pb2_grpc

from services.notifier.gateway_stub import ReferenceGateway
from tests.support import FUZZ_INPUTS, GrpcServer, KafkaBroker

ROOT = Path(__file__).resolve().parents[1]
KAFKA_SCRIPT = ROOT / "deploy" / "kafka" / "kafka.sh"
KAFKA_PORT = int(os.environ.get("KAFKA_PORT", "9092"))


def _answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaBroker]:
    """A real Apache Kafka broker on loopback (started by the project's script if needed)."""
    started_here = False
    if not _answers(KAFKA_PORT):
        result = subprocess.run(
            [str(KAFKA_SCRIPT), "up"],
            env={**os.environ, "KAFKA_PORT": str(KAFKA_PORT)},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"could not start Kafka: {result.stderr[-3000:]}")
        started_here = True
    sasl_port = int(os.environ.get("KAFKA_SASL_SSL_PORT", KAFKA_PORT + 2))
    data_dir = Path(os.environ.get("KAFKA_DATA_DIR", ROOT / "deploy" / "kafka" / ".data"))
    yield KafkaBroker(
        bootstrap_servers=f"127.0.0.1:{KAFKA_PORT}",
        sasl_ssl_servers=f"127.0.0.1:{sasl_port}",
        mtls_servers=f"127.0.0.1:{int(os.environ.get('KAFKA_MTLS_PORT', KAFKA_PORT + 3))}",
        ca_file=data_dir / "tls" / "ca.pem",
        script_env={"KAFKA_PORT": str(KAFKA_PORT), "KAFKA_DATA_DIR": str(data_dir)},
    )
    if started_here:
        subprocess.run([str(KAFKA_SCRIPT), "down"], check=False, timeout=120)


@pytest.fixture
async def grpc_server() -> AsyncIterator[Callable[..., object]]:
    """Factory: ``await grpc_server(register)`` starts a real server on 127.0.0.1 with a channel."""
    started: list[GrpcServer] = []

    async def start(
        register: Callable[[grpc.aio.Server], object],
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),  # type: ignore[type-arg]
    ) -> GrpcServer:
        server = grpc.aio.server(interceptors=list(interceptors))
        register(server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        handle = GrpcServer(server, port, grpc.aio.insecure_channel(f"127.0.0.1:{port}"))
        started.append(handle)
        return handle

    yield start
    for handle in started:
        await handle.channel.close()
        await handle.server.stop(0)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """In CI, a broker test that skips is a failure: integration must really run."""
    report: pytest.TestReport = yield  # type: ignore[misc]
    if (
        os.environ.get("REQUIRE_KAFKA_TESTS") == "1"
        and report.skipped
        and item.get_closest_marker("kafka") is not None
    ):
        report.outcome = "failed"
        report.longrepr = f"{item.nodeid}: Kafka test skipped, but CI requires it to run"
    return report  # type: ignore[return-value]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say how many bad inputs the services survived (the issue asks for the count)."""
    if FUZZ_INPUTS:
        per_service = ", ".join(f"{name} {n}" for name, n in sorted(FUZZ_INPUTS.items()))
        total = sum(FUZZ_INPUTS.values())
        terminalreporter.write_line(f"bad-input fuzz: {total} inputs tried ({per_service})")


@pytest.fixture
async def gateway(grpc_server: Callable[..., Any]) -> tuple[ReferenceGateway, int]:
    """The reference customer gateway on loopback, in this process (so deliveries are counted)."""
    reference = ReferenceGateway(delay_seconds=0.02)
    server: GrpcServer = await grpc_server(
        lambda s: notification_pb2_grpc.add_CustomerChannelGatewayServicer_to_server(reference, s)
    )
    return reference, server.port
