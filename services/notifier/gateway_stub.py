"""A reference ``CustomerChannelGateway`` for development and tests.

``python -m services.notifier.gateway_stub --port 50060`` runs a real gRPC server that
prints what the customer would receive. It can be told to fail or stall, to exercise the
notifier's retries, deadlines and circuit breaker: ``--fail-rate 0.5 --stall-rate 0.1``,
or in-process through :meth:`ReferenceGateway.fail_next`. Delivery is idempotent on
``notification_id``, as every real gateway must be: a repeat is acknowledged with
``duplicate=true`` and not sent again.

Run as a process it checks its callers like every Switchboard server: the identity
settings come from the environment (``SWITCHBOARD_IDENTITY__...``, as the services read
them), and only the ``service`` role may deliver.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import grpc
from switchboard.v1 import common_pb2, notification_pb2, notification_pb2_grpc

from services.common.config import ServiceSettings
from services.common.errors import ConfigError
from services.common.grpc_server import start_grpc_server
from services.common.identity import IdentityInterceptor, Role, authenticator_from, current_caller

__all__ = ["Delivered", "ReferenceGateway", "main"]


@dataclass(frozen=True)
class Delivered:
    """One message the customer really received."""

    notification_id: str
    channel: str
    to: str
    subject: str
    body: str


@dataclass
class ReferenceGateway(notification_pb2_grpc.CustomerChannelGatewayServicer):
    """Prints deliveries; fails or stalls on request; never delivers an id twice."""

    fail_rate: float = 0.0
    stall_rate: float = 0.0
    stall_seconds: float = 30.0
    delay_seconds: float = 0.0
    out: TextIO | None = None
    rng: random.Random = field(default_factory=random.Random)
    delivered: list[Delivered] = field(default_factory=list)
    attempts: int = 0
    _by_id: dict[str, str] = field(default_factory=dict)
    _scripted: list[grpc.StatusCode] = field(default_factory=list)
    #: The role a caller needs (None: in-process tests that run it without an interceptor).
    require: Role | None = None

    def fail_next(self, count: int, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> None:
        """The next ``count`` calls fail with ``code`` (then behave normally)."""
        self._scripted.extend([code] * count)

    def stall_next(self, count: int) -> None:
        """The next ``count`` calls hang past any sane deadline."""
        self._scripted.extend([grpc.StatusCode.DEADLINE_EXCEEDED] * count)

    async def Deliver(
        self, request: notification_pb2.DeliverRequest, context: Any
    ) -> notification_pb2.DeliverResponse:
        if self.require is not None and not current_caller().has(self.require):
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED, f"Deliver needs the {self.require.value!r} role"
            )
        self.attempts += 1
        note = request.notification
        if not note.notification_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "notification_id is required")
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        if self._scripted:
            code = self._scripted.pop(0)
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                await asyncio.sleep(self.stall_seconds)
            await context.abort(code, f"scripted failure: {code.name}")
        roll = self.rng.random()
        if roll < self.stall_rate:
            await asyncio.sleep(self.stall_seconds)
        elif roll < self.stall_rate + self.fail_rate:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "simulated gateway outage")
        previous = self._by_id.get(note.notification_id)
        if previous is not None:
            return notification_pb2.DeliverResponse(gateway_message_id=previous, duplicate=True)
        message_id = f"gw-{len(self._by_id) + 1}"
        self._by_id[note.notification_id] = message_id
        delivered = Delivered(
            notification_id=note.notification_id,
            channel=common_pb2.Channel.Name(note.channel),
            to=note.customer.name or note.customer.customer_id,
            subject=note.subject,
            body=note.body,
        )
        self.delivered.append(delivered)
        if self.out is not None:
            subject = f" [{delivered.subject}]" if delivered.subject else ""
            print(
                f"→ {delivered.channel:<14} to {delivered.to}{subject}: {delivered.body}",
                file=self.out,
                flush=True,
            )
        return notification_pb2.DeliverResponse(gateway_message_id=message_id)


async def _serve(args: argparse.Namespace) -> None:
    gateway = ReferenceGateway(
        fail_rate=args.fail_rate,
        stall_rate=args.stall_rate,
        stall_seconds=args.stall_seconds,
        delay_seconds=args.delay_ms / 1000,
        out=sys.stdout,
        rng=random.Random(args.seed),  # noqa: S311 - simulated faults, not cryptography
        require=Role.SERVICE,
    )
    loaded = ServiceSettings.from_env()  # identity and TLS, as the services read them
    settings = loaded.model_copy(
        update={"grpc": loaded.grpc.model_copy(update={"host": args.host, "port": args.port})}
    )
    identify = IdentityInterceptor(authenticator_from(settings.identity, settings.grpc))

    def register(server: grpc.aio.Server) -> Sequence[str]:
        notification_pb2_grpc.add_CustomerChannelGatewayServicer_to_server(gateway, server)
        return ["switchboard.v1.CustomerChannelGateway"]

    server, port, health = await start_grpc_server(settings.grpc, register, [identify])
    await health.set_serving(True)
    print(f"reference gateway listening on {args.host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await health.shutdown()
    await server.stop(1)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=50060)
    parser.add_argument(
        "--fail-rate", type=float, default=0.0, help="share of calls failing UNAVAILABLE"
    )
    parser.add_argument("--stall-rate", type=float, default=0.0, help="share of calls that hang")
    parser.add_argument("--stall-seconds", type=float, default=30.0)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="latency added to every call")
    parser.add_argument("--seed", type=int, default=None)
    try:
        asyncio.run(_serve(parser.parse_args(argv)))
    except ConfigError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
