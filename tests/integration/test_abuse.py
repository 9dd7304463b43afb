"""The abuse suite: every RPC of every Switchboard server (and the reference gateway),
running as real processes, is called without credentials, with a forged, an expired and a
wrong-audience token, with the wrong role, with a field past its bound and with a request
too large. Every one is refused with the right status, and the refusal leaks nothing."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from switchboard.v1 import (
    common_pb2,
    escalation_pb2,
    escalation_pb2_grpc,
    notification_pb2,
    notification_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
    router_admin_pb2,
    router_admin_pb2_grpc,
)

from services.launcher.demo_credentials import AUDIENCES, DemoIssuer
from tests.support import (
    ISSUER,
    ROOT,
    KafkaBroker,
    ServiceProcess,
    bearer,
    free_port,
    identity_env,
    service_env,
    service_process,
)

pytestmark = pytest.mark.kafka

FORGER = DemoIssuer(issuer=ISSUER.issuer, kid=ISSUER.kid)  # same issuer and key id, other key
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED


@dataclass(frozen=True)
class Rpc:
    server: str
    stub: Callable[[grpc.aio.Channel], Any]
    method: str
    request: Callable[[], Message]
    #: (subject, role, teams) of a caller entitled to it.
    entitled: tuple[str, str, tuple[str, ...]]
    #: A request with one field past its bound.
    oversized: Callable[[], Message]
    streaming: bool = False


#: Past each server's request size limit: 64 KiB, the router's 96 KiB (it takes policy
#: documents of up to 64 KiB).
TOO_LARGE = {"router": 100_000}


def too_large(rpc: Rpc) -> Message:
    """The RPC's request grown past its server's size limit in one of its text fields."""
    size = TOO_LARGE.get(rpc.server, 70_000)
    if rpc.method == "Deliver":
        return deliver_request(body="z" * size)
    request = rpc.request()
    field = next(f for f in request.DESCRIPTOR.fields if f.type == f.TYPE_STRING)
    if field.is_repeated:
        getattr(request, field.name).append("z" * size)
    else:
        setattr(request, field.name, "z" * size)
    return request


def notify_request(text: str = "Your refund is on its way") -> notification_pb2.NotifyRequest:
    request = notification_pb2.NotifyRequest(
        request_id="r1", contact_id="c1", channel=common_pb2.CHANNEL_SMS, text=text
    )
    request.customer.name, request.customer.phone = "Anna Kowalska", "+48600123456"
    return request


def deliver_request(body: str = "hello") -> notification_pb2.DeliverRequest:
    request = notification_pb2.DeliverRequest()
    note = request.notification
    note.notification_id, note.contact_id, note.body = "n1", "c1", body
    note.channel = common_pb2.CHANNEL_SMS
    note.customer.name, note.customer.phone = "Anna Kowalska", "+48600123456"
    return request


ESCALATION_ID = "acme/c1/unroutable"
OPERATOR = ("ops", "operator", ())
MANAGER = ("hugo", "manager", ("*",))
SERVICE = ("crm", "service", ())
LONG = "x" * 3_000
POLICY = "[notification]\nposition_min_interval_s = 45\n"

RPCS = [
    Rpc(
        "router",
        router_admin_pb2_grpc.RouterAdminStub,
        "GetQueueStats",
        router_admin_pb2.GetQueueStatsRequest,
        OPERATOR,
        lambda: router_admin_pb2.GetQueueStatsRequest(domain=LONG),
    ),
    Rpc(
        "router",
        router_admin_pb2_grpc.RouterAdminStub,
        "ListAgents",
        router_admin_pb2.ListAgentsRequest,
        OPERATOR,
        lambda: router_admin_pb2.ListAgentsRequest(domain=LONG),
    ),
    Rpc(
        "router",
        router_admin_pb2_grpc.RouterAdminStub,
        "GetContact",
        lambda: router_admin_pb2.GetContactRequest(contact_id="c1"),
        OPERATOR,
        lambda: router_admin_pb2.GetContactRequest(contact_id=LONG),
    ),
    Rpc(
        "router",
        policy_pb2_grpc.PolicyServiceStub,
        "ValidatePolicy",
        lambda: policy_pb2.ValidatePolicyRequest(document=POLICY),
        OPERATOR,
        lambda: policy_pb2.ValidatePolicyRequest(document="#" * (64 * 1024 + 1)),
    ),
    Rpc(
        "router",
        policy_pb2_grpc.PolicyServiceStub,
        "ApplyPolicy",
        lambda: policy_pb2.ApplyPolicyRequest(domain="acme", document=POLICY, comment="why"),
        OPERATOR,
        lambda: policy_pb2.ApplyPolicyRequest(domain="acme", document=POLICY, comment="c" * 501),
    ),
    Rpc(
        "router",
        policy_pb2_grpc.PolicyServiceStub,
        "GetPolicyHistory",
        lambda: policy_pb2.GetPolicyHistoryRequest(domain="acme"),
        OPERATOR,
        lambda: policy_pb2.GetPolicyHistoryRequest(domain=LONG),
    ),
    Rpc(
        "router",
        policy_pb2_grpc.PolicyServiceStub,
        "RollbackPolicy",
        lambda: policy_pb2.RollbackPolicyRequest(domain="acme", to_version=1, comment="why"),
        OPERATOR,
        lambda: policy_pb2.RollbackPolicyRequest(domain="acme", to_version=1, comment="c" * 501),
    ),
    Rpc(
        "escalation",
        escalation_pb2_grpc.EscalationServiceStub,
        "ListOpen",
        escalation_pb2.ListOpenRequest,
        MANAGER,
        lambda: escalation_pb2.ListOpenRequest(teams=["t"] * 100),
    ),
    Rpc(
        "escalation",
        escalation_pb2_grpc.EscalationServiceStub,
        "Watch",
        escalation_pb2.WatchRequest,
        MANAGER,
        lambda: escalation_pb2.WatchRequest(teams=[LONG]),
        streaming=True,
    ),
    Rpc(
        "escalation",
        escalation_pb2_grpc.EscalationServiceStub,
        "Acknowledge",
        lambda: escalation_pb2.AcknowledgeRequest(escalation_id=ESCALATION_ID),
        MANAGER,
        lambda: escalation_pb2.AcknowledgeRequest(escalation_id=LONG),
    ),
    Rpc(
        "escalation",
        escalation_pb2_grpc.EscalationServiceStub,
        "AddNote",
        lambda: escalation_pb2.AddNoteRequest(escalation_id=ESCALATION_ID, text="called back"),
        MANAGER,
        lambda: escalation_pb2.AddNoteRequest(escalation_id=ESCALATION_ID, text=LONG),
    ),
    Rpc(
        "escalation",
        escalation_pb2_grpc.EscalationServiceStub,
        "Resolve",
        lambda: escalation_pb2.ResolveRequest(escalation_id=ESCALATION_ID, resolution_code="ok"),
        MANAGER,
        lambda: escalation_pb2.ResolveRequest(escalation_id=ESCALATION_ID, resolution_code=LONG),
    ),
    Rpc(
        "notifier",
        notification_pb2_grpc.NotifierServiceStub,
        "Notify",
        notify_request,
        SERVICE,
        lambda: notify_request(text=LONG),
    ),
    Rpc(
        "notifier",
        notification_pb2_grpc.NotifierServiceStub,
        "GetNotification",
        lambda: notification_pb2.GetNotificationRequest(notification_id="n1"),
        SERVICE,
        lambda: notification_pb2.GetNotificationRequest(notification_id=LONG),
    ),
    Rpc(
        "gateway",
        notification_pb2_grpc.CustomerChannelGatewayStub,
        "Deliver",
        deliver_request,
        SERVICE,
        lambda: deliver_request(body="b" * 5_000),
    ),
]


def token(signer: DemoIssuer, subject: str, server: str, role: str, **claims: Any) -> Any:
    minted = signer.mint(subject, audience=AUDIENCES[server], roles=[role], teams=["*"], **claims)
    return (("authorization", f"Bearer {minted}"),)


def attacks(rpc: Rpc) -> list[tuple[str, Any, Message, grpc.StatusCode]]:
    """(name, metadata, request, expected status) for one RPC."""
    subject, role, teams = rpc.entitled
    other_server = "router" if rpc.server != "router" else "escalation"
    wrong_role = "operator" if role != "operator" else "manager"
    entitled = bearer(subject, rpc.server, role, teams=teams)
    return [
        ("no credentials", (), rpc.request(), UNAUTHENTICATED),
        (
            "not a bearer token",
            (("authorization", "Basic YWRtaW46YWRtaW4="),),
            rpc.request(),
            UNAUTHENTICATED,
        ),
        ("forged token", token(FORGER, subject, rpc.server, role), rpc.request(), UNAUTHENTICATED),
        (
            "expired token",
            token(ISSUER, subject, rpc.server, role, now=time.time() - 7200, ttl_s=60),
            rpc.request(),
            UNAUTHENTICATED,
        ),
        (
            "token for another server",
            token(ISSUER, subject, other_server, role),
            rpc.request(),
            UNAUTHENTICATED,
        ),
        (
            "wrong role",
            bearer(subject, rpc.server, wrong_role, teams=teams),
            rpc.request(),
            PERMISSION_DENIED,
        ),
        ("field past its bound", entitled, rpc.oversized(), grpc.StatusCode.INVALID_ARGUMENT),
        # over the size limit: refused before it is even parsed
        (
            "request over the size limit",
            entitled,
            too_large(rpc),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        ),
    ]


async def call(rpc: Rpc, channel: grpc.aio.Channel, request: Message, metadata: Any) -> None:
    method = getattr(rpc.stub(channel), rpc.method)
    if rpc.streaming:
        await method(request, metadata=metadata, timeout=10).read()
    else:
        await method(request, metadata=metadata, timeout=10)


async def test_every_rpc_refuses_every_attack_with_the_right_status(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    topics = await kafka.fresh_topics()
    gateway_port = free_port()
    gateway = ServiceProcess(
        "services.notifier.gateway_stub",
        env=identity_env("gateway")
        | {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen")])},
        log_path=str(tmp_path / "gateway.log"),
        args=("--port", str(gateway_port)),
        grpc_port=gateway_port,
    )
    servers = {
        name: service_process(
            name,
            service_env(name, kafka, topics, GATEWAYS__DEFAULT=f"127.0.0.1:{gateway_port}")
            if name == "notifier"
            else service_env(name, kafka, topics),
            tmp_path,
        )
        for name in ("router", "escalation", "notifier")
    }
    processes = [gateway, *servers.values()]
    for process in processes:
        await process.start()
    ports = {name: p.grpc_port for name, p in servers.items()} | {"gateway": gateway_port}
    wrong: list[str] = []
    tried = 0
    try:
        for rpc in RPCS:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{ports[rpc.server]}") as channel:
                for name, metadata, request, expected in attacks(rpc):
                    tried += 1
                    try:
                        await call(rpc, channel, request, metadata)
                    except grpc.aio.AioRpcError as refused:
                        details = refused.details() or ""
                        if refused.code() != expected:
                            wrong.append(f"{rpc.method} / {name}: {refused.code().name} {details}")
                        if "Kowalska" in details or "600123456" in details:
                            wrong.append(f"{rpc.method} / {name}: leaks customer data: {details}")
                    else:
                        wrong.append(f"{rpc.method} / {name}: answered instead of {expected.name}")
    finally:
        for process in reversed(processes):
            await process.stop()
    assert tried == len(RPCS) * 8
    assert not wrong, "\n".join(wrong)
