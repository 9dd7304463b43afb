"""RouterAdmin: a read-only view of the router's state for operations tools.

Only callers with the ``operator`` role get anything, and only of the domains their
token's scope names: another domain's queues and agents are left out, its contacts are
NOT_FOUND (as a contact that does not exist).

Whichever replica a call reaches answers for every domain: those it owns from their live
cores, the others from the read view of the changelog (:class:`AdminView`), rendered by
the same code from the same core views. A call needing a domain the view had to leave
out (past its bounds) is RESOURCE_EXHAUSTED; one made before the view has read the
changelog at start, and still not after ``admin_view.ready_wait_s``, UNAVAILABLE."""

from __future__ import annotations

import math
from typing import Any

import grpc
from switchboard.v1 import agent_events_pb2, common_pb2, router_admin_pb2, router_admin_pb2_grpc

from services.common.clock import Clock
from services.common.contract import set_duration_s
from services.common.identity import Caller, Role, current_caller
from services.common.state import DomainStates
from services.router.adapters.view import AdminView
from services.router.domain import RoutingCore
from services.router.domain.domains_view import ViewIncomplete
from services.router.domain.read_model import ContactView
from services.router.domain.states import ContactStatus

__all__ = ["RouterAdminServicer"]

_CONTACT_STATUS = {
    ContactStatus.WAITING: router_admin_pb2.CONTACT_STATUS_WAITING,
    ContactStatus.OFFERED: router_admin_pb2.CONTACT_STATUS_OFFERED,
    ContactStatus.ASSIGNED: router_admin_pb2.CONTACT_STATUS_ASSIGNED,
    ContactStatus.PARKED: router_admin_pb2.CONTACT_STATUS_PARKED,
}


class RouterAdminServicer(router_admin_pb2_grpc.RouterAdminServicer):
    """Reads the cores directly: same event loop as the consume loop, and read-only."""

    def __init__(
        self, states: DomainStates[RoutingCore], clock: Clock, view: AdminView | None = None
    ) -> None:
        self._states = states
        self._clock = clock
        #: Other replicas' domains; without it, only this instance's own are answered.
        self._view = view

    @staticmethod
    async def _operator(context: Any) -> Caller:
        caller = current_caller()
        if not caller.has(Role.OPERATOR):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "RouterAdmin is for 'operator'")
        return caller

    async def _ready_view(self, context: Any) -> AdminView | None:
        if self._view is not None and not await self._view.wait_ready():
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                "the read view of other replicas' domains is still loading; try again",
            )
        return self._view

    async def _cores(self, domain: str, context: Any) -> list[tuple[str, RoutingCore]]:
        """The domains the caller may see (only ``domain`` if given), each with its core:
        live if this instance owns it, else rebuilt by the read view."""
        caller = await self._operator(context)
        view = await self._ready_view(context)
        owned = dict(self._states.items())
        if view is None:
            return [
                (d, c)
                for d, c in owned.items()
                if (not domain or d == domain) and caller.sees_domain(d)
            ]
        now = self._clock.now()
        cores = []
        try:
            for d in view.view.plan(owned, caller.sees_domain, domain):
                core = owned.get(d)
                if core is None:
                    core = view.view.core(d, now)
                if core is not None:
                    cores.append((d, core))
        except ViewIncomplete as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, exc.reason)
        return cores

    async def GetQueueStats(
        self, request: router_admin_pb2.GetQueueStatsRequest, context: Any
    ) -> router_admin_pb2.GetQueueStatsResponse:
        now = self._clock.now()
        reply = router_admin_pb2.GetQueueStatsResponse()
        for domain, core in await self._cores(request.domain, context):
            for s in core.queue_stats(now):
                if request.queues and s.queue not in request.queues:
                    continue
                q = reply.queues.add(
                    domain=domain,
                    queue=s.queue,
                    waiting=s.waiting,
                    offered=s.offered,
                    # no service level yet: NaN, as the exported gauge (see the proto)
                    service_level=math.nan if s.service_level is None else s.service_level,
                    answered=s.answered,
                    abandoned=s.abandoned,
                    staffed_agents=s.staffed_agents,
                    policy_version=core.policy_version,
                )
                set_duration_s(q.longest_wait, s.longest_wait)
                if s.estimated_wait is None:  # nobody logged in could take a new arrival
                    q.estimated_wait_unknown = True
                else:
                    set_duration_s(q.estimated_wait, s.estimated_wait)
        return reply

    async def ListAgents(
        self, request: router_admin_pb2.ListAgentsRequest, context: Any
    ) -> router_admin_pb2.ListAgentsResponse:
        reply = router_admin_pb2.ListAgentsResponse()
        for domain, core in await self._cores(request.domain, context):
            for a in core.agent_views():
                if request.state and int(a.state) != request.state:
                    continue
                view = reply.agents.add(
                    agent_id=a.agent_id,
                    domain=domain,
                    team=a.team,
                    state=agent_events_pb2.AgentState.ValueType(int(a.state)),
                    reason=a.reason,
                    languages=list(a.languages),
                    handled=a.handled,
                )
                for skill, level in a.skills:
                    view.skills.add(skill=skill, proficiency=level)
                for channel, count in a.active:
                    pb_channel = common_pb2.Channel.ValueType(int(channel))
                    view.in_hand.add(channel=pb_channel, contacts=count)
                    # deprecated field, kept for old clients: a count in a limit's field
                    view.active.add(channel=pb_channel, max_concurrent=count)
                for channel, limit in a.capacity:
                    view.capacity.add(
                        channel=common_pb2.Channel.ValueType(int(channel)), max_concurrent=limit
                    )
        return reply

    async def GetContact(
        self, request: router_admin_pb2.GetContactRequest, context: Any
    ) -> router_admin_pb2.GetContactResponse:
        view = await self._find_contact(request.contact_id, request.domain, context)
        if view is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"contact {request.contact_id} not found"
            )
            raise AssertionError("unreachable")
        reply = router_admin_pb2.GetContactResponse(
            contact_id=view.contact_id,
            queue=view.queue,
            status=view.status.value,  # deprecated word, kept for old clients
            contact_status=_CONTACT_STATUS[view.status],
            position=view.position,
            agent_id=view.agent_id,
            channel=common_pb2.Channel.ValueType(int(view.channel)),
        )
        if view.estimated_wait is None:  # nobody logged in could take it now
            reply.estimated_wait_unknown = True
        else:
            set_duration_s(reply.estimated_wait, view.estimated_wait)
        set_duration_s(reply.waited, view.waited)
        return reply

    async def _find_contact(self, contact_id: str, domain: str, context: Any) -> ContactView | None:
        """The contact in a domain the caller may see (only ``domain`` if given): looked
        up in the live cores, then in the domains the read view says hold it."""
        caller = await self._operator(context)
        view = await self._ready_view(context)
        now = self._clock.now()
        owned = dict(self._states.items())
        for d, core in owned.items():
            if (
                (not domain or d == domain)
                and caller.sees_domain(d)
                and (found := core.contact_view(contact_id, now)) is not None
            ):
                return found
        if view is None:
            return None
        try:
            for d in view.view.contact_domains(contact_id):
                if d in owned or (domain and d != domain) or not caller.sees_domain(d):
                    continue
                rebuilt = view.view.core(d, now)
                if rebuilt is not None and (found := rebuilt.contact_view(contact_id, now)):
                    return found
            # not found: say so only if every domain the caller may see was looked in
            view.view.plan(owned, caller.sees_domain, domain)
        except ViewIncomplete as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, exc.reason)
        return None
