"""``switchboard queues|agents|contact``: the router's view, for operators (RouterAdmin).

    export SWITCHBOARD_TOKEN_FILE=.run/identity/tokens/ops.jwt     # made by `make run`
    switchboard queues
    switchboard agents --state away
    switchboard contact call-1842 --domain acme

You see only the domains your token names.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from typing import Any

from switchboard.v1 import (
    agent_events_pb2,
    common_pb2,
    router_admin_pb2,
    router_admin_pb2_grpc,
)

from services.cli.grpc_options import add_grpc_options, connect
from services.cli.proto_text import duration_text, enum_word

__all__ = [
    "DEFAULT_TARGET",
    "STATES",
    "agent_line",
    "contact_lines",
    "queue_lines",
    "register",
]

DEFAULT_TARGET = "127.0.0.1:50051"
#: The states ``agents --state`` takes, as words.
STATES = tuple(
    name.removeprefix("AGENT_STATE_").lower()
    for name in agent_events_pb2.AgentState.keys()  # noqa: SIM118 - a proto enum, not a dict
    if name != "AGENT_STATE_UNSPECIFIED"
)


def _channel(value: int) -> str:
    return enum_word(common_pb2.Channel, value, "CHANNEL_")


def queue_lines(queues: Sequence[router_admin_pb2.QueueStats]) -> list[str]:
    """A table: one line per queue. SL is ``-`` while the queue has none (answered no one
    and no one abandoned after the threshold), not 100 %."""
    if not queues:
        return ["no queues"]
    lines = [
        f"{'DOMAIN':<12} {'QUEUE':<16} {'WAITING':>7} {'OFFERED':>7} {'LONGEST':>8} "
        f"{'EST.WAIT':>8} {'SL':>5} {'ANSWERED':>8} {'ABANDONED':>9} {'STAFFED':>7}"
    ]
    for q in sorted(queues, key=lambda q: (q.domain, q.queue)):
        sl = "-" if math.isnan(q.service_level) else f"{q.service_level:.0%}"
        lines.append(
            f"{q.domain:<12} {q.queue:<16} {q.waiting:>7} {q.offered:>7} "
            f"{duration_text(q.longest_wait):>8} {duration_text(q.estimated_wait):>8} {sl:>5} "
            f"{q.answered:>8} {q.abandoned:>9} {q.staffed_agents:>7}"
        )
    return lines


def agent_line(a: router_admin_pb2.AgentView) -> str:
    """``acme  a1  team=billing  away (lunch)  voice 1/1  handled 3  billing:5  en,pl``."""
    state = enum_word(agent_events_pb2.AgentState, a.state, "AGENT_STATE_")
    if a.reason:
        state += f" ({a.reason})"
    in_hand = {load.channel: load.contacts for load in a.in_hand}
    load = ", ".join(
        f"{_channel(c.channel)} {in_hand.get(c.channel, 0)}/{c.max_concurrent}"
        for c in a.capacity
        if c.max_concurrent or in_hand.get(c.channel)
    )
    skills = ",".join(f"{s.skill}:{s.proficiency}" for s in a.skills)
    return (
        f"{a.domain}  {a.agent_id}  team={a.team}  {state}  in hand {load or '-'}  "
        f"handled {a.handled}  skills {skills or '-'}  languages {','.join(a.languages) or '-'}"
    )


def contact_lines(c: router_admin_pb2.GetContactResponse) -> list[str]:
    status = enum_word(router_admin_pb2.ContactStatus, c.contact_status, "CONTACT_STATUS_")
    rows = [
        ("status", status),
        ("queue", c.queue),
        ("channel", _channel(c.channel)),
        ("waited", duration_text(c.waited)),
    ]
    if c.contact_status == router_admin_pb2.CONTACT_STATUS_WAITING:
        rows += [("position", str(c.position)), ("est. wait", duration_text(c.estimated_wait))]
    if c.agent_id:
        rows.append(("agent", c.agent_id))
    return [f"contact {c.contact_id}", *(f"  {name:<10} {value}" for name, value in rows)]


async def _queues(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    async with connect(args, env) as (channel, metadata):
        stub = router_admin_pb2_grpc.RouterAdminStub(channel)
        request = router_admin_pb2.GetQueueStatsRequest(domain=args.domain, queues=args.queue)
        reply = await stub.GetQueueStats(request, metadata=metadata)
    print("\n".join(queue_lines(reply.queues)))
    return 0


async def _agents(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    state = (
        agent_events_pb2.AgentState.Value(f"AGENT_STATE_{args.state.upper()}")
        if args.state
        else agent_events_pb2.AGENT_STATE_UNSPECIFIED
    )
    async with connect(args, env) as (channel, metadata):
        stub = router_admin_pb2_grpc.RouterAdminStub(channel)
        request = router_admin_pb2.ListAgentsRequest(domain=args.domain, state=state)
        reply = await stub.ListAgents(request, metadata=metadata)
    agents = sorted(reply.agents, key=lambda a: (a.domain, a.agent_id))
    print("\n".join(agent_line(a) for a in agents) if agents else "no agents")
    return 0


async def _contact(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    async with connect(args, env) as (channel, metadata):
        stub = router_admin_pb2_grpc.RouterAdminStub(channel)
        request = router_admin_pb2.GetContactRequest(domain=args.domain, contact_id=args.id)
        reply = await stub.GetContact(request, metadata=metadata)
    print("\n".join(contact_lines(reply)))
    return 0


def register(commands: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """Add ``queues``, ``agents`` and ``contact`` to the ``switchboard`` parser."""
    queues = commands.add_parser(
        "queues",
        help="queue statistics: waiting, longest wait, service level ... (operators)",
        description="Per queue: contacts waiting and offered, longest and estimated wait, "
        "service level, answered, abandoned, agents staffed.",
        formatter_class=formatter,
    )
    queues.add_argument("--queue", action="append", default=[], help="only this queue (repeatable)")
    queues.set_defaults(run=_queues)
    agents = commands.add_parser(
        "agents",
        help="agents by state, with what they hold (operators)",
        description="One line per logged-in agent: state, contacts in hand per channel "
        "against capacity, contacts handled, skills, languages.",
        formatter_class=formatter,
    )
    agents.add_argument("--state", choices=STATES, help="only agents in this state")
    agents.set_defaults(run=_agents)
    contact = commands.add_parser(
        "contact",
        help="where a contact stands: position, wait, agent (operators)",
        description="A contact's status, queue, time waited, and its position and "
        "estimated wait while waiting, or its agent.",
        formatter_class=formatter,
    )
    contact.add_argument("id", help="the contact id")
    contact.set_defaults(run=_contact)
    for parser in (queues, agents, contact):
        parser.add_argument("--domain", default="", help="only this routing domain (tenant)")
        add_grpc_options(parser, DEFAULT_TARGET)
