"""``switchboard escalations watch|list|ack|note|resolve``: escalations, for managers.

    export SWITCHBOARD_TOKEN_FILE=.run/identity/tokens/piotr.jwt   # made by `make run`
    switchboard escalations watch
    switchboard escalations list
    switchboard escalations ack acme/c42/wait_threshold
    switchboard escalations note ID "called the customer"
    switchboard escalations resolve ID refund-issued

One line per escalation. You see and change only your teams' escalations.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from switchboard.v1 import escalation_pb2, escalation_pb2_grpc

from services.cli.grpc_options import add_grpc_options, connect
from services.cli.proto_text import enum_word

__all__ = ["DEFAULT_TARGET", "format_escalation", "register"]

DEFAULT_TARGET = "127.0.0.1:50052"


def format_escalation(e: escalation_pb2.Escalation, kind: str = "") -> str:
    """One line, raise time in local time; ``kind`` (a change's) prefixes it in brackets::

        [raised] 2025-01-06 10:12:03  HIGH     supervisor:sofia    team=billing    unroutable
        contact=c2 (Ola)  open  id=eu/c2/unroutable  — no eligible agent in billing-en

    (one line, wrapped here).
    """
    at = datetime.fromtimestamp(e.raised_at.seconds).strftime("%Y-%m-%d %H:%M:%S")
    severity = enum_word(escalation_pb2.Severity, e.severity, "SEVERITY_").upper()
    tier = enum_word(escalation_pb2.Tier, e.tier, "TIER_")
    reason = enum_word(escalation_pb2.EscalationReason, e.reason, "ESCALATION_REASON_")
    status = enum_word(escalation_pb2.EscalationStatus, e.status, "ESCALATION_STATUS_")
    who = f" ({e.customer.name})" if e.customer.name else ""
    change = f"[{kind}] " if kind else ""
    return (
        f"{change}{at}  {severity:<8} {tier}:{e.assignee:<8} team={e.team:<10} "
        f"{reason:<18} contact={e.contact_id}{who}  {status}  id={e.escalation_id}"
        f"{'  — ' + e.summary if e.summary else ''}"
    )


async def _run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    async with connect(args, env) as (channel, metadata):
        stub = escalation_pb2_grpc.EscalationServiceStub(channel)
        if args.action == "watch":
            call = stub.Watch(escalation_pb2.WatchRequest(teams=args.team), metadata=metadata)
            async for item in call:
                record = item.record
                kind = enum_word(
                    escalation_pb2.EscalationChangeKind, record.kind, "ESCALATION_CHANGE_KIND_"
                )
                if kind == "snapshot_complete":
                    print("— open escalations above; live changes follow —", flush=True)
                    continue
                print(format_escalation(record.escalation, kind), flush=True)
        elif args.action == "list":
            reply = await stub.ListOpen(
                escalation_pb2.ListOpenRequest(teams=args.team), metadata=metadata
            )
            for e in reply.escalations:
                print(format_escalation(e))
            if not reply.escalations:
                print("no open escalations")
        elif args.action == "ack":
            ack = await stub.Acknowledge(
                escalation_pb2.AcknowledgeRequest(escalation_id=args.id), metadata=metadata
            )
            print(format_escalation(ack.escalation))
        elif args.action == "note":
            noted = await stub.AddNote(
                escalation_pb2.AddNoteRequest(escalation_id=args.id, text=args.text),
                metadata=metadata,
            )
            print(format_escalation(noted.escalation))
        elif args.action == "resolve":
            done = await stub.Resolve(
                escalation_pb2.ResolveRequest(
                    escalation_id=args.id, resolution_code=args.code, note=args.note
                ),
                metadata=metadata,
            )
            print(format_escalation(done.escalation))
    return 0


def register(commands: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """Add ``escalations`` and its subcommands to the ``switchboard`` parser. The connection
    options and ``--team`` may come before or after the subcommand."""
    group = commands.add_parser(
        "escalations",
        help="escalations of your teams: watch, list, ack, note, resolve (managers)",
        description="Escalations of your teams, one line each, for managers: another "
        "team's is NOT_FOUND, like one that does not exist. The connection options and "
        "--team may come before or after the action.",
        formatter_class=formatter,
    )

    def common(parser: argparse.ArgumentParser, *, repeat: bool) -> None:
        add_grpc_options(parser, DEFAULT_TARGET, repeat=repeat)
        parser.add_argument(
            "--team",
            action="append",
            default=argparse.SUPPRESS if repeat else [],
            help="only these teams (repeatable; default all of yours)",
        )

    common(group, repeat=False)
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    leaves = [
        actions.add_parser(
            "watch",
            help="open escalations, then live changes, until Ctrl-C",
            formatter_class=formatter,
        ),
        actions.add_parser("list", help="open escalations", formatter_class=formatter),
    ]
    ack = actions.add_parser("ack", help="acknowledge one", formatter_class=formatter)
    ack.add_argument("id", help="the escalation id, as listed (id=...)")
    note = actions.add_parser("note", help="add a note to one", formatter_class=formatter)
    note.add_argument("id", help="the escalation id, as listed (id=...)")
    note.add_argument("text", help="the note (at most 2,000 characters)")
    resolve = actions.add_parser(
        "resolve", help="resolve one with a code", formatter_class=formatter
    )
    resolve.add_argument("id", help="the escalation id, as listed (id=...)")
    resolve.add_argument("code", help="the resolution code, e.g. callback_done")
    resolve.add_argument("--note", default="", help="a closing note")
    for parser in (*leaves, ack, note, resolve):
        common(parser, repeat=True)
        parser.set_defaults(run=_run)
