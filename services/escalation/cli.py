"""A command-line client for managers without a console.

    export SWITCHBOARD_TOKEN_FILE=.run/identity/tokens/piotr.jwt   # made by `make run`
    python -m services.escalation.cli watch
    python -m services.escalation.cli list
    python -m services.escalation.cli ack acme/c42/wait_threshold
    python -m services.escalation.cli note ID "called the customer"
    python -m services.escalation.cli resolve ID refund-issued

One human-readable line per escalation. The caller's token (a JWT) comes from a file
(``--token-file`` or $SWITCHBOARD_TOKEN_FILE) or $SWITCHBOARD_TOKEN, never from the
command line, where other users of the machine could read it. The connection uses TLS
(``--ca-file``, and ``--cert``/``--key`` for mTLS) except to a loopback address.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

import grpc
from switchboard.v1 import escalation_pb2, escalation_pb2_grpc

from services.common.config import GrpcClientSettings
from services.common.errors import ConfigError
from services.common.grpc_client import bearer_metadata, is_loopback, open_channel, read_token

__all__ = ["format_escalation", "main"]


def _name(enum: object, value: int, prefix: str) -> str:
    """An enum value's proto name without its prefix, lower case (``TIER_MANAGER`` -> manager)."""
    return str(enum.Name(value)).removeprefix(prefix).lower()  # type: ignore[attr-defined]


def format_escalation(e: escalation_pb2.Escalation, kind: str = "") -> str:
    """One line, raise time in local time; ``kind`` (a change's) prefixes it in brackets::

        [raised] 2025-01-06 10:12:03  HIGH     supervisor:sofia    team=billing    unroutable
        contact=c2 (Ola)  open  id=eu/c2/unroutable  — no eligible agent in billing-en

    (one line, wrapped here).
    """
    at = datetime.fromtimestamp(e.raised_at.seconds).strftime("%Y-%m-%d %H:%M:%S")
    severity = _name(escalation_pb2.Severity, e.severity, "SEVERITY_").upper()
    tier = _name(escalation_pb2.Tier, e.tier, "TIER_")
    reason = _name(escalation_pb2.EscalationReason, e.reason, "ESCALATION_REASON_")
    status = _name(escalation_pb2.EscalationStatus, e.status, "ESCALATION_STATUS_")
    who = f" ({e.customer.name})" if e.customer.name else ""
    change = f"[{kind}] " if kind else ""
    return (
        f"{change}{at}  {severity:<8} {tier}:{e.assignee:<8} team={e.team:<10} "
        f"{reason:<18} contact={e.contact_id}{who}  {status}  id={e.escalation_id}"
        f"{'  — ' + e.summary if e.summary else ''}"
    )


def client_settings(args: argparse.Namespace, env: Mapping[str, str]) -> GrpcClientSettings:
    """Where the token and TLS files come from: flags, else the environment."""
    token_file = args.token_file or env.get("SWITCHBOARD_TOKEN_FILE") or None
    token = None if token_file else env.get("SWITCHBOARD_TOKEN") or None
    tls = bool(args.ca_file or args.cert)
    return GrpcClientSettings(
        token_file=Path(token_file) if token_file else None,
        token=token,
        tls_ca_file=args.ca_file,
        tls_cert_file=args.cert,
        tls_key_file=args.key,
        plaintext=not tls and is_loopback(args.target),
    )


async def _run(args: argparse.Namespace) -> int:
    try:
        settings = client_settings(args, os.environ)
        token = read_token(settings)
        channel = open_channel(args.target, settings)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not token:
        print("error: no token: set SWITCHBOARD_TOKEN_FILE (or --token-file)", file=sys.stderr)
        return 2
    metadata = bearer_metadata(token)
    async with channel:
        stub = escalation_pb2_grpc.EscalationServiceStub(channel)
        try:
            if args.command == "watch":
                call = stub.Watch(escalation_pb2.WatchRequest(teams=args.team), metadata=metadata)
                async for item in call:
                    record = item.record
                    kind = _name(
                        escalation_pb2.EscalationChangeKind, record.kind, "ESCALATION_CHANGE_KIND_"
                    )
                    if kind == "snapshot_complete":
                        print("— open escalations above; live changes follow —", flush=True)
                        continue
                    print(format_escalation(record.escalation, kind), flush=True)
            elif args.command == "list":
                reply = await stub.ListOpen(
                    escalation_pb2.ListOpenRequest(teams=args.team), metadata=metadata
                )
                for e in reply.escalations:
                    print(format_escalation(e))
                if not reply.escalations:
                    print("no open escalations")
            elif args.command == "ack":
                ack = await stub.Acknowledge(
                    escalation_pb2.AcknowledgeRequest(escalation_id=args.id), metadata=metadata
                )
                print(format_escalation(ack.escalation))
            elif args.command == "note":
                noted = await stub.AddNote(
                    escalation_pb2.AddNoteRequest(escalation_id=args.id, text=args.text),
                    metadata=metadata,
                )
                print(format_escalation(noted.escalation))
            elif args.command == "resolve":
                done = await stub.Resolve(
                    escalation_pb2.ResolveRequest(
                        escalation_id=args.id, resolution_code=args.code, note=args.note
                    ),
                    metadata=metadata,
                )
                print(format_escalation(done.escalation))
        except grpc.aio.AioRpcError as exc:
            print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Escalations for managers.")
    parser.add_argument("--target", default="127.0.0.1:50052")
    parser.add_argument("--token-file", type=Path, default=None, help="file holding your JWT")
    parser.add_argument("--ca-file", type=Path, default=None, help="CA of the server (TLS)")
    parser.add_argument("--cert", type=Path, default=None, help="client certificate (mTLS)")
    parser.add_argument("--key", type=Path, default=None, help="client key (mTLS)")
    parser.add_argument("--team", action="append", default=[], help="only these teams")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("watch", help="open escalations, then live changes")
    sub.add_parser("list", help="open escalations")
    ack = sub.add_parser("ack", help="acknowledge")
    ack.add_argument("id")
    note = sub.add_parser("note", help="add a note")
    note.add_argument("id")
    note.add_argument("text")
    resolve = sub.add_parser("resolve", help="resolve with a code")
    resolve.add_argument("id")
    resolve.add_argument("code")
    resolve.add_argument("--note", default="")
    args = parser.parse_args(argv)
    try:
        sys.exit(asyncio.run(_run(args)))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
