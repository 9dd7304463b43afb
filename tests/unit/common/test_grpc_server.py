"""Every server answers health to anyone (probes), and reflection to any identified caller
(so grpcurl needs no .proto files, but a stranger learns nothing, not even the API)."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from switchboard.v1 import router_admin_pb2, router_admin_pb2_grpc

from services.common.config import GrpcSettings, IdentitySettings
from services.common.grpc_server import start_grpc_server
from services.common.identity import IdentityInterceptor, authenticator_from
from tests.support import bearer, jwks_file


class Admin(router_admin_pb2_grpc.RouterAdminServicer):
    async def ListAgents(
        self, request: object, context: object
    ) -> router_admin_pb2.ListAgentsResponse:
        return router_admin_pb2.ListAgentsResponse()


def register(server: grpc.aio.Server) -> Sequence[str]:
    router_admin_pb2_grpc.add_RouterAdminServicer_to_server(Admin(), server)
    return ["switchboard.v1.RouterAdmin"]


async def test_reflection_answers_an_identified_caller_of_any_role_and_no_stranger() -> None:
    settings = GrpcSettings(port=0)
    identity = IdentitySettings.model_validate(
        {"profile": "demo", "jwt": {"jwks_file": jwks_file(), "audience": "switchboard-router"}}
    )
    gate = IdentityInterceptor(authenticator_from(identity, settings))
    server, port, health = await start_grpc_server(settings, register, [gate])
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            listing = [reflection_pb2.ServerReflectionRequest(list_services="")]
            stranger = stub.ServerReflectionInfo(iter(listing))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stranger.read()
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED

            # a manager has no RouterAdmin role, but may see what the server offers
            manager = bearer("mira", "router", "manager", teams=("billing",))
            call = stub.ServerReflectionInfo(iter(listing), metadata=manager)
            reply = await call.read()
            names = {s.name for s in reply.list_services_response.service}
            assert names == {
                "switchboard.v1.RouterAdmin",
                "grpc.health.v1.Health",
                "grpc.reflection.v1alpha.ServerReflection",
            }
            admin = router_admin_pb2_grpc.RouterAdminStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as no_token:
                await admin.ListAgents(router_admin_pb2.ListAgentsRequest())
            assert no_token.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await health.shutdown()
        await server.stop(0)
