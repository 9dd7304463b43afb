"""RouterAdmin: a read-only view of the router's state for operations tools.

Only callers with the ``operator`` role get anything, and only of the domains their
token's scope names: another domain's queues and agents are left out, its contacts are
NOT_FOUND (as a contact that does not exist)."""

from __future__ import annotations

import math
from typing import Any

import grpc
from switchboard.v1 import agent_events_pb2, common_pb2, router_admin_pb2, router_admin_pb2_grpc

from services.common.clock import Clock
from services.common.contract import set_duration_s
from services.common.identity import Caller, Role, current_caller
from services.common.state import DomainStates
from services.router.domain import RoutingCore
from services.router.domain.states import ContactStatus

__all__ = ["RouterAdminServicer"]

_CONTACT_STATUS = {
    ContactStatus.WAITING: router_admin_pb2.CONTACT_STATUS_WAITING,
    ContactStatus.OFFERED: router_admin_pb2.CONTACT_STATUS_OFFERED,
    ContactStatus.ASSIGNED: router_admin_pb2.CONTACT_STATUS_ASSIGNED,
}


class RouterAdminServicer(router_admin_pb2_grpc.RouterAdminServicer):
    """Reads the cores directly: same event loop as the consume loop, and read-only."""

    def __init__(self, states: DomainStates[RoutingCore], clock: Clock) -> None:
        self._states = states
        self._clock = clock

    @staticmethod
    async def _operator(context: Any) -> Caller:
        caller = current_caller()
        if not caller.has(Role.OPERATOR):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "RouterAdmin is for 'operator'")
        return caller

    async def _cores(self, domain: str, context: Any) -> list[tuple[str, RoutingCore]]:
        """This instance's domains the caller may see (only ``domain`` if given)."""
        caller = await self._operator(context)
        return [
            (d, c)
            for d, c in self._states.items()
            if (not domain or d == domain) and caller.sees_domain(d)
        ]

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
        now = self._clock.now()
        for _, core in await self._cores(request.domain, context):
            view = core.contact_view(request.contact_id, now)
            if view is None:
                continue
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
        await context.abort(grpc.StatusCode.NOT_FOUND, f"contact {request.contact_id} not found")
        raise AssertionError("unreachable")
