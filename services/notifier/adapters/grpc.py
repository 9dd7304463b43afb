"""NotifierService: decide a DIRECT notification with free text (``Notify``; the
request's deprecated ``kind`` is ignored), and look a notification up.

Only callers with the ``service`` role whose scope includes the servicer's domain may
send; a notification of a domain outside the caller's scope is NOT_FOUND."""

from __future__ import annotations

from typing import Any

import grpc
from switchboard.v1 import notification_pb2, notification_pb2_grpc

from services.common.identity import Role, current_caller
from services.common.kafka import ConsumeLoop, NotOwnedError, OutboundRecord
from services.notifier.adapters.kafka import NotifierHandler
from services.notifier.adapters.mapping import OUTCOMES, customer_from
from services.notifier.domain import core as n

__all__ = ["NotifierServicer"]


class NotifierServicer(notification_pb2_grpc.NotifierServiceServicer):
    """Direct requests all belong to one routing domain, ``domain``."""

    def __init__(self, handler: NotifierHandler, loop: ConsumeLoop, domain: str) -> None:
        self._handler, self._loop, self._domain = handler, loop, domain

    async def Notify(
        self, request: notification_pb2.NotifyRequest, context: Any
    ) -> notification_pb2.NotifyResponse:
        """Decide the notification in the domain's partition transaction; returns its id
        once committed (the delivery worker sends it)."""
        caller = current_caller()
        if not caller.has(Role.SERVICE) or not caller.sees_domain(self._domain):
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"Notify needs the 'service' role for domain {self._domain!r}",
            )
        if not request.request_id or not request.contact_id or not request.text:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "request_id, contact_id and text are required"
            )
        event = n.DirectRequest(
            request.request_id,
            request.contact_id,
            int(request.channel),
            customer_from(request.customer),
            request.text,
        )

        try:
            partition = self._loop.partition_of(self._domain)
        except NotOwnedError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{exc}; retry")
            raise

        def command() -> tuple[str, list[OutboundRecord]]:
            core = self._handler.states.core_for(self._domain, partition)
            core.apply(event, f"direct-{request.request_id}", self._handler.clock.now())
            return f"direct-{request.request_id}:direct", []

        try:
            notification_id = await self._loop.execute(command, partition=partition)
        except NotOwnedError as exc:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"domain {self._domain!r} is served by another instance now ({exc}); retry",
            )
            raise
        return notification_pb2.NotifyResponse(notification_id=notification_id)

    async def GetNotification(
        self, request: notification_pb2.GetNotificationRequest, context: Any
    ) -> notification_pb2.GetNotificationResponse:
        """Outcome of a notification in a domain this instance owns; attempts and last
        error only while it is pending."""
        caller = current_caller()
        if not caller.has(Role.SERVICE):
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED, "GetNotification needs the 'service' role"
            )
        for domain, core in self._handler.states.items():
            if not caller.sees_domain(domain):
                continue
            outcome = core.outcome(request.notification_id)
            if outcome is not None:
                record = notification_pb2.NotificationRecord(outcome=OUTCOMES[outcome])
                record.notification.notification_id = request.notification_id
                pending = core.pending(request.notification_id)
                if pending is not None:
                    record.attempts, record.last_error = pending.attempts, pending.last_error
                return notification_pb2.GetNotificationResponse(record=record)
        await context.abort(grpc.StatusCode.NOT_FOUND, "no such notification")
        raise AssertionError("unreachable")
