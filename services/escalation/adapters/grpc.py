"""EscalationService: what managers' consoles (and the CLI) call.

Authentication is the interceptor's job (a verified JWT or mTLS identity). Only callers
with the ``manager`` role get anything. Which teams a manager sees is the policy's rule
(``teams_visible_to``: the teams a person staffs, plus ``access`` grants) narrowed by the
scope their token carries (teams, domains). An escalation outside that is NOT_FOUND,
exactly as one that does not exist, so ids cannot be probed. State changes go through the
consume loop (``execute``), so the record is committed to the ``escalations`` topic
before the manager gets the reply.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from switchboard.v1 import escalation_pb2, escalation_pb2_grpc

from services.common.identity import Caller, Role, current_caller
from services.common.kafka import ConsumeLoop, NotOwnedError, OutboundRecord
from services.escalation.adapters.kafka import EscalationHandler
from services.escalation.adapters.mapping import escalation_to_proto
from services.escalation.adapters.watchers import TooManyWatchers
from services.escalation.domain import (
    CommandError,
    CommandResult,
    InvalidArgument,
    InvalidTransition,
    NotFound,
    PermissionDenied,
)
from services.escalation.domain import model as m

__all__ = ["EscalationServicer"]

_STATUS = {
    NotFound: grpc.StatusCode.NOT_FOUND,
    InvalidTransition: grpc.StatusCode.FAILED_PRECONDITION,
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
}


class EscalationServicer(escalation_pb2_grpc.EscalationServiceServicer):
    def __init__(self, handler: EscalationHandler, loop: ConsumeLoop) -> None:
        self._handler, self._loop = handler, loop

    @staticmethod
    async def _manager(context: Any) -> Caller:
        caller = current_caller()
        if not caller.has(Role.MANAGER):
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED, "escalations are for the 'manager' role"
            )
        return caller

    async def _teams(self, caller: Caller, requested: list[str], context: Any) -> frozenset[str]:
        """The teams the caller asked for (all they may see if none), or PERMISSION_DENIED
        naming a requested team the policy or their token's scope does not give them."""
        outside = sorted(t for t in requested if not caller.sees_team(t))
        if outside:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{caller.subject} may not see team(s) {outside}",
            )
        try:
            teams = self._handler.policy.teams_to_show(caller.subject, requested)
        except PermissionDenied as exc:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, exc.reason)
            raise
        return frozenset(t for t in teams if caller.sees_team(t))

    @staticmethod
    def _visible(caller: Caller, e: m.Escalation) -> bool:
        return caller.sees_domain(e.domain) and caller.sees_team(e.team)

    async def Watch(
        self, request: escalation_pb2.WatchRequest, context: Any
    ) -> AsyncIterator[escalation_pb2.WatchResponse]:
        caller = await self._manager(context)
        teams = await self._teams(caller, list(request.teams), context)
        try:
            watcher = self._handler.watchers.open()  # before the snapshot: nothing falls between
        except TooManyWatchers as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
            raise
        try:
            for e in self._handler.open_for(teams):  # sent as RAISED, whatever their history
                if not caller.sees_domain(e.domain):
                    continue
                yield self._item(m.EscalationChangeKind.RAISED, e)
            yield escalation_pb2.WatchResponse(
                record=escalation_pb2.EscalationRecord(
                    kind=escalation_pb2.ESCALATION_CHANGE_KIND_SNAPSHOT_COMPLETE
                )
            )
            while True:
                change = await watcher.queue.get()
                if change is None:
                    await context.abort(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"this stream fell {self._handler.watchers.queue_size} changes behind; "
                        "reconnect for a fresh snapshot",
                    )
                    return
                if change.escalation.team in teams and caller.sees_domain(change.escalation.domain):
                    yield self._item(change.kind, change.escalation)
        finally:
            self._handler.watchers.close(watcher)

    @staticmethod
    def _item(kind: m.EscalationChangeKind, e: m.Escalation) -> escalation_pb2.WatchResponse:
        return escalation_pb2.WatchResponse(
            record=escalation_pb2.EscalationRecord(
                kind=escalation_pb2.EscalationChangeKind.ValueType(kind.value),
                escalation=escalation_to_proto(e),
            )
        )

    async def _command(self, escalation_id: str, context: Any, run: Any) -> m.Escalation:
        caller = await self._manager(context)
        not_found = NotFound(f"escalation {escalation_id!r} not found")

        def command() -> tuple[m.Escalation, list[OutboundRecord]]:
            core = self._handler.core_holding(escalation_id)
            found = core.get(escalation_id) if core is not None else None
            if core is None or found is None or not self._visible(caller, found):
                raise not_found
            try:
                result: CommandResult = run(core, caller.subject, self._handler.clock.now())
            except PermissionDenied:  # another team's: as if it did not exist
                raise not_found from None
            return result.escalation, self._handler.emit_changes(result.changes)

        partition = self._handler.partition_of_escalation(escalation_id)
        if partition is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"escalation {escalation_id!r} not found"
            )
            raise AssertionError("unreachable")
        try:
            return await self._loop.execute(command, partition=partition)
        except NotOwnedError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{exc}; retry")
            raise
        except CommandError as exc:
            await context.abort(
                _STATUS.get(type(exc), grpc.StatusCode.FAILED_PRECONDITION), exc.reason
            )
            raise

    async def Acknowledge(
        self, request: escalation_pb2.AcknowledgeRequest, context: Any
    ) -> escalation_pb2.AcknowledgeResponse:
        e = await self._command(
            request.escalation_id,
            context,
            lambda core, who, now: core.acknowledge(request.escalation_id, who, now),
        )
        return escalation_pb2.AcknowledgeResponse(escalation=escalation_to_proto(e))

    async def AddNote(
        self, request: escalation_pb2.AddNoteRequest, context: Any
    ) -> escalation_pb2.AddNoteResponse:
        e = await self._command(
            request.escalation_id,
            context,
            lambda core, who, now: core.add_note(request.escalation_id, who, request.text, now),
        )
        return escalation_pb2.AddNoteResponse(escalation=escalation_to_proto(e))

    async def Resolve(
        self, request: escalation_pb2.ResolveRequest, context: Any
    ) -> escalation_pb2.ResolveResponse:
        e = await self._command(
            request.escalation_id,
            context,
            lambda core, who, now: core.resolve(
                request.escalation_id, who, request.resolution_code, now, request.note
            ),
        )
        return escalation_pb2.ResolveResponse(escalation=escalation_to_proto(e))

    async def ListOpen(
        self, request: escalation_pb2.ListOpenRequest, context: Any
    ) -> escalation_pb2.ListOpenResponse:
        caller = await self._manager(context)
        teams = await self._teams(caller, list(request.teams), context)
        tier = m.Tier(request.tier) if request.tier else None
        reason = m.EscalationReason(request.reason) if request.reason else None
        found = [
            e
            for e in self._handler.open_for(teams, tier=tier, reason=reason)
            if caller.sees_domain(e.domain)
        ]
        return escalation_pb2.ListOpenResponse(escalations=[escalation_to_proto(e) for e in found])
