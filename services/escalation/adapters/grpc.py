"""EscalationService: what managers' consoles (and the CLI) call, on any instance.

Authentication is the interceptor's job (a verified JWT or mTLS identity). Only callers
with the ``manager`` role get anything. Which teams a manager sees is the rule of the
escalation's domain's policy (``teams_visible_to``: the teams a person staffs, plus
``access`` grants; each domain runs its own version, :class:`DomainPolicies`) narrowed by
the scope their token carries (teams, domains). An escalation outside that is NOT_FOUND,
exactly as one that does not exist, so ids cannot be probed. A team named in a request
must be one the caller sees in some domain.

Watch and ListOpen answer from this instance's read view of every domain
(:class:`~services.escalation.adapters.replicas.ReadModel`). Acknowledge, AddNote and
Resolve are checked against the view here (an escalation committed before the call is
in it: the view is brought up to date first when it does not show the id), then sent to
the instance owning the escalation's domain, which checks the caller again, applies the
command in its transaction and answers; the reply comes once that is committed, with the
escalation as this instance's view then shows it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, NoReturn

import grpc
from switchboard.v1 import escalation_pb2, escalation_pb2_grpc

from services.common.identity import Caller, Role, current_caller
from services.escalation.adapters.mapping import escalation_to_proto
from services.escalation.adapters.replicas import (
    CommandTimedOut,
    ReadModel,
    TooManyCommands,
    ViewUnavailable,
)
from services.escalation.adapters.watchers import TooManyWatchers
from services.escalation.domain import PermissionDenied
from services.escalation.domain import commands as c
from services.escalation.domain import model as m
from services.escalation.domain.read_view import ReadViewFull
from services.escalation.settings import CommandSettings, ViewSettings

__all__ = ["EscalationServicer"]

_STATUS = {
    c.CommandStatus.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    c.CommandStatus.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    c.CommandStatus.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    c.CommandStatus.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    c.CommandStatus.EXPIRED: grpc.StatusCode.DEADLINE_EXCEEDED,
    c.CommandStatus.REJECTED: grpc.StatusCode.INTERNAL,
}
#: Seconds of the caller's own deadline kept back to send the reply in.
REPLY_MARGIN_S = 0.2


class EscalationServicer(escalation_pb2_grpc.EscalationServiceServicer):
    def __init__(
        self,
        model: ReadModel,
        view: ViewSettings | None = None,
        commands: CommandSettings | None = None,
    ) -> None:
        self._model = model
        self._view_settings = view or ViewSettings()
        self._command_settings = commands or CommandSettings()

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
            teams = self._model.policies.teams_to_show(caller.subject, requested)
        except PermissionDenied as exc:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, exc.reason)
            raise
        return frozenset(t for t in teams if caller.sees_team(t))

    def _visible(self, caller: Caller, e: m.Escalation) -> bool:
        return (
            caller.sees_domain(e.domain)
            and caller.sees_team(e.team)
            and self._model.policies.visible_to(caller.subject)(e)
        )

    @staticmethod
    def _budget(context: Any, limit: float) -> float:
        """Seconds this call may wait: ``limit``, or less if the caller's deadline is sooner."""
        remaining: float | None = getattr(context, "time_remaining", lambda: None)()
        if remaining is None:
            return limit
        return max(0.0, min(limit, remaining - REPLY_MARGIN_S))

    async def _ready(self, context: Any) -> None:
        """The read view loaded and complete, or the call fails saying why."""
        try:
            await self._model.ready(self._budget(context, self._view_settings.load_timeout_s))
        except ViewUnavailable as exc:
            await _abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))
        except ReadViewFull as exc:
            await _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))

    async def Watch(
        self, request: escalation_pb2.WatchRequest, context: Any
    ) -> AsyncIterator[escalation_pb2.WatchResponse]:
        caller = await self._manager(context)
        teams = await self._teams(caller, list(request.teams), context)
        await self._ready(context)
        watchers = self._model.watchers
        try:
            watcher = watchers.open()  # before the snapshot: nothing falls between
        except TooManyWatchers as exc:
            await _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        try:
            snapshot = self._model.view.open_for(teams)  # sent as RAISED, whatever their history
            in_scope = self._model.policies.visible_to(caller.subject)
            for e in snapshot:
                if caller.sees_domain(e.domain) and in_scope(e):
                    yield self._item(m.EscalationChangeKind.RAISED, e)
            yield escalation_pb2.WatchResponse(
                record=escalation_pb2.EscalationRecord(
                    kind=escalation_pb2.ESCALATION_CHANGE_KIND_SNAPSHOT_COMPLETE
                )
            )
            while True:
                change = await watcher.queue.get()
                if change is None:
                    await _abort(
                        context,
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"this stream fell {watchers.queue_size} changes behind; "
                        "reconnect for a fresh snapshot",
                    )
                e = change.escalation
                # each change under its domain's policy as it is now (it may have changed)
                if (
                    e.team in teams
                    and caller.sees_domain(e.domain)
                    and self._model.policies.visible_to(caller.subject)(e)
                ):
                    yield self._item(change.kind, e)
        finally:
            watchers.close(watcher)

    @staticmethod
    def _item(kind: m.EscalationChangeKind, e: m.Escalation) -> escalation_pb2.WatchResponse:
        return escalation_pb2.WatchResponse(
            record=escalation_pb2.EscalationRecord(
                kind=escalation_pb2.EscalationChangeKind.ValueType(kind.value),
                escalation=escalation_to_proto(e),
            )
        )

    async def _command(self, command: c.ManagerCommand, context: Any) -> m.Escalation:
        caller = await self._manager(context)
        esc_id = command.escalation_id
        not_found = f"escalation {esc_id!r} not found"
        await self._ready(context)
        limit = self._command_settings.timeout_s
        model = self._model
        found = model.view.get(esc_id)
        if found is None:  # perhaps committed a moment ago: read up to now, then look again
            try:
                await model.caught_up(self._budget(context, limit))
            except ViewUnavailable as exc:
                await _abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))
            found = model.view.get(esc_id)
        if found is None or not self._visible(caller, found):
            await _abort(context, grpc.StatusCode.NOT_FOUND, not_found)
        requester = c.Requester(
            subject=caller.subject,
            roles=frozenset(role.value for role in caller.roles),
            teams=c.Requester.scope_for(caller.teams, found.team),
            domains=c.Requester.scope_for(caller.domains, found.domain),
        )
        try:
            outcome = await model.commands.send(
                found.domain, command, requester, self._budget(context, limit)
            )
        except TooManyCommands as exc:
            await _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        except CommandTimedOut as exc:
            await _abort(context, grpc.StatusCode.DEADLINE_EXCEEDED, str(exc))
        except ViewUnavailable as exc:
            await _abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))
        if outcome.status is not c.CommandStatus.OK:
            code = _STATUS.get(outcome.status, grpc.StatusCode.UNKNOWN)
            await _abort(context, code, outcome.message or not_found)
        # Committed: answer with the escalation as the view shows it at the new version
        # (so the caller's next read on this instance shows the change too).
        budget = self._budget(context, limit)
        shown = await model.showing(esc_id, outcome.version, budget)
        done = model.view.get(esc_id)
        if not shown or done is None:
            await _abort(
                context,
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"the command on {esc_id!r} was applied, but this instance's view did not "
                f"show the result within {budget:.1f} s; ListOpen shows it shortly",
            )
        return done

    async def Acknowledge(
        self, request: escalation_pb2.AcknowledgeRequest, context: Any
    ) -> escalation_pb2.AcknowledgeResponse:
        e = await self._command(c.Acknowledge(request.escalation_id), context)
        return escalation_pb2.AcknowledgeResponse(escalation=escalation_to_proto(e))

    async def AddNote(
        self, request: escalation_pb2.AddNoteRequest, context: Any
    ) -> escalation_pb2.AddNoteResponse:
        e = await self._command(c.AddNote(request.escalation_id, request.text), context)
        return escalation_pb2.AddNoteResponse(escalation=escalation_to_proto(e))

    async def Resolve(
        self, request: escalation_pb2.ResolveRequest, context: Any
    ) -> escalation_pb2.ResolveResponse:
        e = await self._command(
            c.Resolve(request.escalation_id, request.resolution_code, request.note), context
        )
        return escalation_pb2.ResolveResponse(escalation=escalation_to_proto(e))

    async def ListOpen(
        self, request: escalation_pb2.ListOpenRequest, context: Any
    ) -> escalation_pb2.ListOpenResponse:
        caller = await self._manager(context)
        teams = await self._teams(caller, list(request.teams), context)
        tier = m.Tier(request.tier) if request.tier else None
        reason = m.EscalationReason(request.reason) if request.reason else None
        await self._ready(context)
        in_scope = self._model.policies.visible_to(caller.subject)
        found = [
            e
            for e in self._model.view.open_for(teams, tier=tier, reason=reason)
            if caller.sees_domain(e.domain) and in_scope(e)
        ]
        return escalation_pb2.ListOpenResponse(escalations=[escalation_to_proto(e) for e in found])


async def _abort(context: Any, code: grpc.StatusCode, details: str) -> NoReturn:
    """End the call with ``code`` (``context.abort`` raises; this says so to the checker)."""
    await context.abort(code, details)
    raise AssertionError("unreachable: context.abort raises")
