"""``switchboard policy``: a domain's policies, for operators (PolicyService, on the router).

    switchboard policy validate deploy/policies/acme.toml            # offline: the parsers here
    switchboard policy validate --server deploy/policies/acme.toml   # ask the service
    switchboard policy diff --domain acme new.toml                   # what changes, in words
    switchboard policy apply --domain acme new.toml --comment "open tech-pl"
    switchboard policy history --domain acme [--show 3]
    switchboard policy rollback --domain acme --to 3 --comment "tech-pl back to 45 s"

A policy document is TOML with up to three tables: [routing] (router.toml's [routing]),
[escalation] (escalation.toml's [escalation]) and [notification] (notifier.toml's
[policy]); a table left out keeps the service's configured default. ``apply`` and
``rollback`` write a new version that every service applies in order with the domain's
events; they are refused if someone applied meanwhile (``--expected-version``, by default
the version current when the command starts). You act only on the domains your token
names.
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from switchboard.v1 import policy_pb2, policy_pb2_grpc

from services.cli.grpc_options import add_grpc_options, connect
from services.cli.proto_text import utc_text
from services.common.errors import ConfigError
from services.common.policy_document import MAX_COMMENT_CHARS, MAX_DOCUMENT_BYTES
from services.escalation.domain import EscalationPolicy
from services.escalation.domain import PolicyError as EscalationPolicyError
from services.notifier.domain.core import NotifierPolicy
from services.notifier.domain.errors import PolicyError as NotifierPolicyError
from services.policy.diff import diff_policies
from services.policy.validation import InvalidPolicy, ParsedPolicy, parse_document
from services.router.domain import PolicyError as RoutingPolicyError
from services.router.domain import RoutingPolicy

__all__ = [
    "DEFAULTS_DIR",
    "DEFAULT_TARGET",
    "configured_default",
    "history_lines",
    "read_document",
    "register",
    "version_line",
]

DEFAULT_TARGET = "127.0.0.1:50051"
#: The services' configuration files: what a domain without a policy version runs on.
DEFAULTS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "config"


def read_document(path: Path) -> str:
    """The file's text, or :class:`ConfigError` (unreadable, not UTF-8, over 64 KiB)."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_DOCUMENT_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_DOCUMENT_BYTES} bytes (a policy's limit)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None


def _table(path: Path, name: str) -> dict[str, Any] | None:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    table = data.get(name, {})
    return table if isinstance(table, dict) else None


def configured_default(directory: Path) -> ParsedPolicy:
    """The policy a domain without versions runs on, read from the services' configuration
    files in ``directory`` (router.toml [routing], escalation.toml [escalation],
    notifier.toml [policy]); a file not there leaves that table unknown (None)."""
    routing = _table(directory / "router.toml", "routing")
    escalation = _table(directory / "escalation.toml", "escalation")
    notification = _table(directory / "notifier.toml", "policy")
    try:
        return ParsedPolicy(
            routing=None if routing is None else RoutingPolicy.from_dict(routing),
            escalation=None
            if escalation is None
            else EscalationPolicy.from_dict(escalation, prefix="escalation."),
            notification=None if notification is None else NotifierPolicy.from_dict(notification),
        )
    except (RoutingPolicyError, EscalationPolicyError, NotifierPolicyError) as exc:
        raise ConfigError(f"{directory}: the configured default is invalid: {exc}") from None


def version_line(v: policy_pb2.PolicyVersion) -> str:
    """``3  2026-11-25 21:03:11Z  ops  (restores 1)  open tech-pl``."""
    at = utc_text(v.applied_at.seconds * 1000 + v.applied_at.nanos // 1_000_000)
    restores = f"  (restores {v.restores_version})" if v.restores_version else ""
    return f"{v.version:>7}  {at}  {v.author}{restores}  {v.comment}"


def history_lines(domain: str, versions: Sequence[policy_pb2.PolicyVersion]) -> list[str]:
    if not versions:
        return [f"domain {domain} has no policy versions: it runs on the configured default"]
    return [
        f"domain {domain}: {len(versions)} version(s) kept, newest first",
        f"{'VERSION':>7}  {'APPLIED (UTC)':<20}  AUTHOR  COMMENT",
        *(version_line(v) for v in versions),
    ]


def _parsed(document: str, where: str) -> ParsedPolicy:
    try:
        return parse_document(document)
    except InvalidPolicy as exc:
        raise ConfigError(f"{where}: invalid: " + "; ".join(exc.problems)) from None


def _comment(text: str) -> str:
    if not text.strip():
        raise ConfigError("--comment: required (why, in your words: it is kept with the version)")
    if len(text) > MAX_COMMENT_CHARS:
        raise ConfigError(f"--comment: {len(text)} characters, at most {MAX_COMMENT_CHARS}")
    return text


async def _history(
    stub: policy_pb2_grpc.PolicyServiceAsyncStub, domain: str, metadata: Any
) -> Sequence[policy_pb2.PolicyVersion]:
    reply = await stub.GetPolicyHistory(
        policy_pb2.GetPolicyHistoryRequest(domain=domain), metadata=metadata
    )
    return list(reply.versions)


# ------------------------------------------------------------------------------ actions


async def _validate(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    document = read_document(args.file)
    if args.server:
        async with connect(args, env) as (channel, metadata):
            stub = policy_pb2_grpc.PolicyServiceStub(channel)
            reply = await stub.ValidatePolicy(
                policy_pb2.ValidatePolicyRequest(document=document), metadata=metadata
            )
        problems, where = list(reply.problems), f"checked by {args.target}"
    else:
        try:
            parse_document(document)
            problems = []
        except InvalidPolicy as exc:
            problems = exc.problems
        where = "checked here, with the services' parsers"
    if problems:
        print(f"{args.file}: invalid ({where})")
        print("\n".join(f"  {p}" for p in problems))
        return 1
    print(f"{args.file}: valid ({where})")
    return 0


async def _diff(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    new = _parsed(read_document(args.file), str(args.file))
    default = configured_default(args.defaults)
    if args.against is None and not args.domain:
        raise ConfigError("--domain: required (or --against OLD_FILE, offline)")
    if args.against is not None:
        old = _parsed(read_document(args.against), str(args.against))
        heading = f"{args.against} -> {args.file}"
    else:
        async with connect(args, env) as (channel, metadata):
            versions = await _history(
                policy_pb2_grpc.PolicyServiceStub(channel), args.domain, metadata
            )
        if versions:
            current = versions[0]
            old = _parsed(current.document, f"version {current.version}")
            heading = f"domain {args.domain}, version {current.version} -> {args.file}"
        else:
            old = ParsedPolicy()
            heading = (
                f"domain {args.domain} has no policy version: comparing the configured "
                f"default ({args.defaults}: router.toml [routing], escalation.toml "
                f"[escalation], notifier.toml [policy]) -> {args.file}"
            )
    print(heading)
    print("\n".join(diff_policies(old, new, default)))
    return 0


async def _apply(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    document = read_document(args.file)
    comment = _comment(args.comment)
    async with connect(args, env) as (channel, metadata):
        stub = policy_pb2_grpc.PolicyServiceStub(channel)
        expected = args.expected_version
        if expected is None:
            versions = await _history(stub, args.domain, metadata)
            expected = versions[0].version if versions else 0
        reply = await stub.ApplyPolicy(
            policy_pb2.ApplyPolicyRequest(
                domain=args.domain,
                document=document,
                comment=comment,
                expected_version=expected,
            ),
            metadata=metadata,
        )
    print(f"applied to domain {args.domain} (was version {expected}):")
    print(version_line(reply.applied))
    return 0


async def _history_command(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    async with connect(args, env) as (channel, metadata):
        versions = await _history(policy_pb2_grpc.PolicyServiceStub(channel), args.domain, metadata)
    if args.show is not None:
        shown = next((v for v in versions if v.version == args.show), None)
        if shown is None:
            kept = ", ".join(str(v.version) for v in versions) or "none"
            raise LookupError(f"domain {args.domain} has no version {args.show} (kept: {kept})")
        print(shown.document, end="" if shown.document.endswith("\n") else "\n")
        return 0
    print("\n".join(history_lines(args.domain, versions)))
    return 0


async def _rollback(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    comment = _comment(args.comment)
    async with connect(args, env) as (channel, metadata):
        stub = policy_pb2_grpc.PolicyServiceStub(channel)
        expected = args.expected_version
        if expected is None:
            versions = await _history(stub, args.domain, metadata)
            expected = versions[0].version if versions else 0
        reply = await stub.RollbackPolicy(
            policy_pb2.RollbackPolicyRequest(
                domain=args.domain,
                to_version=args.to,
                comment=comment,
                expected_version=expected,
            ),
            metadata=metadata,
        )
    print(f"rolled back domain {args.domain} to version {args.to}'s document:")
    print(version_line(reply.applied))
    return 0


# ------------------------------------------------------------------------------ parser


def _version_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a version number") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"{value} is not a version number (0 or more)")
    return value


def register(commands: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """Add ``policy`` and its actions to the ``switchboard`` parser."""
    group = commands.add_parser(
        "policy",
        help="a domain's policies: validate, diff, apply, history, rollback (operators)",
        description=__doc__,
        formatter_class=formatter,
    )
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")

    validate = actions.add_parser(
        "validate",
        help="check a policy document (offline, or with --server by the service)",
        description="Check a document with the services' own parsers; nothing is applied. "
        "Exit status 1 if it is invalid (each problem names its field).",
        formatter_class=formatter,
    )
    validate.add_argument("file", type=Path, help="the policy document (TOML)")
    validate.add_argument(
        "--server",
        action="store_true",
        help="ask the PolicyService (at --target) instead of the parsers of this installation",
    )
    validate.set_defaults(run=_validate)

    diff = actions.add_parser(
        "diff",
        help="what a document changes against a domain's current policy, in words",
        description="Compare the domain's current document (its newest version; the "
        "configured default if it has none) with FILE, and say what changes: queues, "
        "skills and thresholds, strategies, steps, service levels, timeouts, capacity; "
        "escalation teams, people, tiers' deadlines, triggers, calendars; notification "
        "thresholds. A table a document leaves out is compared as the configured default.",
        formatter_class=formatter,
    )
    diff.add_argument("file", type=Path, help="the proposed policy document (TOML)")
    diff.add_argument(
        "--against",
        type=Path,
        help="compare with this document instead of the domain's current one (offline)",
    )
    diff.add_argument(
        "--defaults",
        type=Path,
        default=DEFAULTS_DIR,
        help="the services' configuration files, whose tables are the configured default "
        "(default %(default)s)",
    )
    diff.set_defaults(run=_diff)

    apply = actions.add_parser(
        "apply",
        help="apply a document as the domain's new version",
        description="Validate FILE and write it as the domain's next version; every "
        "service applies it in order with the domain's events. Refused, with nothing "
        "applied, if it is invalid or if the domain's version is no longer the expected one.",
        formatter_class=formatter,
    )
    apply.add_argument("file", type=Path, help="the policy document (TOML)")
    apply.set_defaults(run=_apply)

    history = actions.add_parser(
        "history",
        help="a domain's versions: who applied what, when, why",
        description="The domain's current and earlier versions (up to 20 kept), newest first.",
        formatter_class=formatter,
    )
    history.add_argument(
        "--show", type=_version_number, metavar="N", help="print version N's document instead"
    )
    history.set_defaults(run=_history_command)

    rollback = actions.add_parser(
        "rollback",
        help="apply an earlier version's document again, as a new version",
        description="Write a new version carrying version N's document (it says which "
        "version it restores). Refused if N is not in the history or if the domain's "
        "version is no longer the expected one.",
        formatter_class=formatter,
    )
    rollback.add_argument(
        "--to", type=_version_number, required=True, metavar="N", help="the version to restore"
    )
    rollback.set_defaults(run=_rollback)

    for parser in (apply, rollback):
        parser.add_argument(
            "--comment",
            required=True,
            help=f"why, in your words (kept with the version; at most {MAX_COMMENT_CHARS} "
            "characters)",
        )
        parser.add_argument(
            "--expected-version",
            type=_version_number,
            metavar="N",
            help="the version your change is based on (0: the domain has none); refused if "
            "another is current. Default: the version current when the command starts",
        )
    for parser, required in ((diff, False), (apply, True), (history, True), (rollback, True)):
        parser.add_argument(
            "--domain",
            required=required,
            default="",
            help="the routing domain (tenant)"
            + ("" if required else "; required unless --against is given"),
        )
    for parser in (validate, diff, apply, history, rollback):
        add_grpc_options(parser, DEFAULT_TARGET)
