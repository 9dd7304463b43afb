"""gRPC server helpers: every service's server registers the standard health service and
server reflection.

TLS is on when a certificate and key are configured; with a client CA as well, the
server asks for client certificates (mTLS), whose identity interceptors may read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from services.common.config import GrpcSettings
from services.common.errors import ConfigError

__all__ = ["HealthReporter", "start_grpc_server"]


class HealthReporter:
    """Sets the serving status of the whole server ("") and of named services."""

    def __init__(
        self,
        servicer: HealthServicer,
        services: Sequence[str],
        probe_server: grpc.aio.Server | None = None,
    ) -> None:
        self._servicer = servicer
        self._services = ["", *services]
        self._probe_server = probe_server

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in self._services:
            await self._servicer.set(name, status)

    async def shutdown(self) -> None:
        await self._servicer.enter_graceful_shutdown()
        if self._probe_server is not None:
            await self._probe_server.stop(0)


def _credentials(settings: GrpcSettings) -> grpc.ServerCredentials | None:
    if settings.tls_cert_file is None and settings.tls_key_file is None:
        return None
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        raise ConfigError("grpc.tls_cert_file and grpc.tls_key_file must be set together")
    try:
        key = settings.tls_key_file.read_bytes()
        cert = settings.tls_cert_file.read_bytes()
        client_ca = (
            settings.tls_client_ca_file.read_bytes() if settings.tls_client_ca_file else None
        )
    except OSError as exc:
        raise ConfigError(f"grpc.tls_*: cannot read {exc.filename}: {exc.strerror}") from None
    return grpc.ssl_server_credentials(
        [(key, cert)],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


async def start_grpc_server(
    settings: GrpcSettings,
    register: Callable[[grpc.aio.Server], Sequence[str]],
    interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]] = (),
) -> tuple[grpc.aio.Server, int, HealthReporter]:
    """Start a server with ``register``'s services plus health; return (server, port, health).

    ``register`` adds the servicers and returns their full service names for health.
    """
    server = grpc.aio.server(
        interceptors=list(interceptors),
        options=[
            ("grpc.max_receive_message_length", settings.max_request_bytes),
            ("grpc.max_concurrent_streams", settings.max_concurrent_rpcs),
        ],
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )
    names = register(server)
    servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    # Reflection: grpcurl and other tools list and call the API without the .proto files
    # (the schema is the published contract; calls still need an identity).
    reflection.enable_server_reflection(
        [
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    address = f"{settings.host}:{settings.port}"
    credentials = _credentials(settings)
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    if port == 0:
        raise ConfigError(f"grpc.port: cannot bind {address}")
    await server.start()
    probe_server = await _start_probe_server(settings, servicer)
    reporter = HealthReporter(servicer, names, probe_server)
    await reporter.set_serving(False)
    return server, port, reporter


async def _start_probe_server(
    settings: GrpcSettings, servicer: HealthServicer
) -> grpc.aio.Server | None:
    """The health service alone, plaintext, on ``grpc.health_port``: Kubernetes' gRPC
    probes speak no TLS, and health says nothing about anyone (it is public anyway)."""
    if not settings.health_port:
        return None
    probe = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, probe)
    address = f"{settings.host}:{settings.health_port}"
    if probe.add_insecure_port(address) == 0:
        raise ConfigError(f"grpc.health_port: cannot bind {address}")
    await probe.start()
    return probe
