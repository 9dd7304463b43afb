"""The customer-channel gateways the notifier delivers through: the ``ChannelGateway``
protocol the delivery worker calls, the gRPC client (``CustomerChannelGateway``), and an
in-memory fake for unit tests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

import grpc
from switchboard.v1 import notification_pb2, notification_pb2_grpc

from services.common.grpc_client import bearer_metadata, open_channel, read_token
from services.notifier.adapters.mapping import to_proto
from services.notifier.domain.channels import channel_info
from services.notifier.domain.core import Notification
from services.notifier.settings import GatewaySettings

__all__ = ["ChannelGateway", "FakeChannelGateway", "GatewayError", "GrpcChannelGateway"]


class GatewayError(Exception):
    """A delivery attempt failed; ``status`` is the gRPC status name the core decides on."""

    def __init__(self, status: str, details: str) -> None:
        super().__init__(f"{status}: {details}")
        self.status = status
        self.details = details


class ChannelGateway(Protocol):
    """Delivers a notification on its channel; idempotent on ``notification_id``."""

    def endpoint(self, channel: int) -> str:
        """The endpoint that serves ``channel`` (the worker keeps a circuit breaker per
        endpoint)."""
        ...

    async def deliver(self, notification: Notification, timeout_s: float) -> str:
        """The gateway's message id; raises :class:`GatewayError` on failure."""
        ...

    async def close(self) -> None: ...


@dataclass
class GrpcChannelGateway:
    """``CustomerChannelGateway`` over gRPC, one channel per endpoint of ``settings``."""

    settings: GatewaySettings
    _channels: dict[str, grpc.aio.Channel] = field(default_factory=dict)
    _metadata: tuple[tuple[str, str], ...] = field(init=False)

    def __post_init__(self) -> None:
        # Read at start: a missing token file fails the service before it consumes.
        self._metadata = bearer_metadata(
            read_token(self.settings.credentials, "gateways.credentials.token")
        )

    def endpoint(self, channel: int) -> str:
        return self.settings.for_channel(channel_info(channel).name)

    async def deliver(self, notification: Notification, timeout_s: float) -> str:
        target = self.endpoint(notification.channel)
        channel = self._channels.get(target)
        if channel is None:
            channel = self._channels[target] = open_channel(target, self.settings.credentials)
        stub = notification_pb2_grpc.CustomerChannelGatewayStub(channel)
        try:
            reply = await stub.Deliver(
                notification_pb2.DeliverRequest(notification=to_proto(notification)),
                timeout=timeout_s,
                metadata=self._metadata,
            )
        except grpc.aio.AioRpcError as exc:
            raise GatewayError(exc.code().name, exc.details() or "") from None
        return str(reply.gateway_message_id)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close(None)
        self._channels.clear()


@dataclass
class FakeChannelGateway:
    """In-memory gateway for tests: delivers at once into ``delivered``, once per id;
    fails or stalls the next calls on request (:meth:`fail_next`, :meth:`stall_next`)."""

    endpoint_name: str = "fake"
    delivered: list[Notification] = field(default_factory=list)
    attempts: int = 0
    _message_ids: dict[str, str] = field(default_factory=dict)
    #: Scripted failures, in order: a status name, or ``None`` for a stall.
    _scripted: list[str | None] = field(default_factory=list)

    def fail_next(self, count: int, status: str = "UNAVAILABLE") -> None:
        self._scripted.extend([status] * count)

    def stall_next(self, count: int) -> None:
        """The next ``count`` calls never answer (until the caller's deadline cancels them)."""
        self._scripted.extend([None] * count)

    def endpoint(self, channel: int) -> str:
        return self.endpoint_name

    async def deliver(self, notification: Notification, timeout_s: float) -> str:
        self.attempts += 1
        if self._scripted:
            status = self._scripted.pop(0)
            if status is None:
                await asyncio.Event().wait()
                raise AssertionError("unreachable")
            raise GatewayError(status, "scripted failure")
        message_id = self._message_ids.get(notification.notification_id)
        if message_id is None:
            message_id = self._message_ids[notification.notification_id] = (
                f"fake-{len(self._message_ids) + 1}"
            )
            self.delivered.append(notification)
        return message_id

    async def close(self) -> None:
        return None
