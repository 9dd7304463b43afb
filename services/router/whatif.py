"""``python -m services.router.whatif``: try a routing policy on recorded traffic, or
find the fewest agents for a service-level target.

Replay a recorded window of one domain under the current and a proposed policy::

    python -m services.router.whatif --domain acme \\
        --from 2026-11-25T09:00 --to 2026-11-25T17:00 --policy proposed.toml \\
        [--current deploy/config/router.toml] [--agents billing-en:+2 --agents polish:-1]

reads the domain's ``contact.events``, ``agent.events`` and ``routing.decisions`` of the
window from Kafka (connection from ``SWITCHBOARD_KAFKA__*`` and ``SWITCHBOARD_CONFIG``,
or ``--bootstrap-servers``), replays them through the real routing core under both
policies, with the real escalation and notifier cores fed alongside
(:mod:`services.router.replay` and :mod:`services.router.downstream` say what is
replayed as recorded and what is modelled), and prints per queue, side by side, what
was recorded and what each policy gives: service level, ASA, abandonment, occupancy,
escalations raised and notifications sent (the recorded ones read from ``escalations``
and ``notifications``). ``--agents`` is part of the proposal: the proposed replay runs
with the changed staffing, the current one with the staffing as recorded (to see staffing
alone, propose the current policy).

The escalation policy of both sides is ``--escalation-policy`` (a file's
``[escalation]`` table: escalation.toml or a policy document; default
deploy/config/escalation.toml), the notification policy ``--notification-policy`` (its
``[notification]`` table, or notifier.toml's ``[policy]``; default
deploy/config/notifier.toml); a ``--current`` or ``--policy`` file that is a policy
document with an ``[escalation]`` or ``[notification]`` table gives that side its own.

Find the fewest agents meeting a target, by simulation with the real core::

    python -m services.router.whatif --target 80/20 --queue billing-en \\
        --rate-per-minute 4 --aht-seconds 180 --patience-seconds 120

or with the queue's arrival rate, handle time and patience measured on a recorded
window (``--domain``, ``--from``, ``--to`` instead of the three figures). The Erlang C
and Erlang A (M/M/n+M) answers are printed beside it.

Policies are TOML files: a policy document (``deploy/policies/*.toml``: its ``[routing]``
table), a router configuration's ``[routing]`` table, or a file whose top level is that
table. Times are ISO 8601 (a time without offset is local time) or
epoch seconds. Exit status: 0 done, 2 a bad argument or policy, 1 Kafka failed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import tomllib
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from aiokafka.errors import KafkaError
from pydantic import BaseModel, ConfigDict

from services.common.config import KafkaSettings, load_settings
from services.common.errors import ConfigError
from services.common.policy_document import TABLES, PolicyDocumentError, policy_tables
from services.common.topics import Topics
from services.escalation.domain import EscalationPolicy
from services.escalation.domain import PolicyError as EscalationPolicyError
from services.notifier.adapters.templates import load_catalog
from services.notifier.domain.core import NotifierPolicy
from services.notifier.domain.errors import PolicyError as NotifierPolicyError
from services.notifier.domain.templates import TemplateCatalog, TemplateError
from services.router.adapters.outcome_reader import read_outcomes
from services.router.adapters.recording_reader import read_applied_policy, read_window
from services.router.domain import PolicyError, RoutingPolicy
from services.router.downstream import DownstreamPolicies
from services.router.recording import (
    Figures,
    LegEnd,
    QueueFigures,
    Recording,
    Stream,
    build_recording,
)
from services.router.recording import figures as recorded_figures
from services.router.replay import AgentChange, PatienceModel, adjust_agents, replay
from services.router.simulate import QueueLoad
from services.router.staffing import StaffingAnswer, fewest_agents, parse_target

__all__ = [
    "DEFAULT_ESCALATION",
    "DEFAULT_NOTIFICATION",
    "DEFAULT_POLICY",
    "DESCRIPTION",
    "add_arguments",
    "build_parser",
    "downstream_policies",
    "format_comparison",
    "format_staffing",
    "load_policy",
    "main",
    "queue_load",
    "run",
]

_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "config"
DEFAULT_POLICY = _CONFIG / "router.toml"
DEFAULT_ESCALATION = _CONFIG / "escalation.toml"
DEFAULT_NOTIFICATION = _CONFIG / "notifier.toml"
TEMPLATES = Path(__file__).resolve().parents[1] / "notifier" / "templates"
MODELLED = (
    "escalations and notifications: the escalation and notifier cores fed each replay "
    "(nobody acknowledges an escalation; the gateway takes every notification at once)"
)
#: Reasons and kinds named in the footnotes (the most frequent first).
TOP = 4


class _Settings(BaseModel):
    """The Kafka connection, from the environment and ``$SWITCHBOARD_CONFIG``."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    kafka: KafkaSettings = KafkaSettings()


class UsageError(Exception):
    """A bad argument or policy: printed, exit status 2."""


# ---------------------------------------------------------------------------- arguments


#: What the what-if answers, for its ``--help`` (and ``switchboard whatif --help``).
DESCRIPTION = (
    "Replay a recorded window of a domain's traffic under the current and a proposed "
    "routing policy (a policy document's [routing] table, or a router.toml), or find the "
    "fewest agents for a service-level target."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="whatif", description=DESCRIPTION)
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The what-if's options (shared with ``switchboard whatif``)."""
    window = parser.add_argument_group("recorded window")
    window.add_argument("--domain", help="routing domain (tenant) to read")
    window.add_argument("--from", dest="start", help="first arrival counted (ISO 8601 or epoch s)")
    window.add_argument("--to", dest="end", help="last arrival counted (ISO 8601 or epoch s)")
    window.add_argument(
        "--warmup-minutes",
        type=float,
        default=30.0,
        help="replay this much before --from too, to load the queues (not counted)",
    )
    window.add_argument(
        "--tail-minutes",
        type=float,
        default=60.0,
        help="read this much after --to: how the window's last contacts ended",
    )
    window.add_argument(
        "--roster-hours",
        type=float,
        default=24.0,
        help="read agent events this far back: who is logged in when the replay starts",
    )
    window.add_argument("--bootstrap-servers", help="Kafka (default: the configuration's)")
    window.add_argument("--topic-prefix", help="topic prefix (default: the configuration's)")
    replaying = parser.add_argument_group("policies (replay)")
    replaying.add_argument(
        "--policy",
        type=Path,
        help="the proposed routing policy: a policy document (its [routing] table, as "
        "`switchboard policy apply` takes) or a router.toml",
    )
    replaying.add_argument(
        "--current",
        type=Path,
        default=None,
        help="the policy in force: a policy document or a router.toml (default: the "
        "domain's applied version, read from the policies topic, or, if it has none, "
        f"{DEFAULT_POLICY})",
    )
    replaying.add_argument(
        "--escalation-policy",
        type=Path,
        help="the escalation policy: a file's [escalation] table (default: --current's if "
        f"a policy document with one, else {DEFAULT_ESCALATION}); the proposed side's too, "
        "unless --policy is a policy document with an [escalation] table",
    )
    replaying.add_argument(
        "--notification-policy",
        type=Path,
        help="the notification policy: a file's [notification] table, or notifier.toml's "
        f"[policy] (default: --current's if it has one, else {DEFAULT_NOTIFICATION}); the "
        "proposed side's too, unless --policy has a [notification] table",
    )
    replaying.add_argument(
        "--agents",
        action="append",
        default=[],
        metavar="GROUP:+N",
        help="the proposal's staffing: clone (+N) or remove (-N) agents of a team, or else "
        "of a skill, in the proposed replay only; repeatable",
    )
    replaying.add_argument(
        "--patience",
        choices=[p.value for p in PatienceModel],
        default=PatienceModel.KAPLAN_MEIER.value,
        help="how answered contacts' unknown patience is modelled",
    )
    replaying.add_argument(
        "--seed", type=int, default=1, help="random seed of the modelled patience (default 1)"
    )
    staffing = parser.add_argument_group("staffing (--target)")
    staffing.add_argument("--target", help="PERCENT/SECONDS, e.g. 80/20")
    staffing.add_argument("--queue", help="the queue to staff")
    staffing.add_argument("--rate-per-minute", type=float, help="arrivals a minute")
    staffing.add_argument("--aht-seconds", type=float, help="mean handle time")
    staffing.add_argument(
        "--patience-seconds", type=float, default=0.0, help="mean patience; 0: nobody hangs up"
    )
    staffing.add_argument("--hours", type=float, default=24.0, help="simulated hours per seed")
    staffing.add_argument("--seeds", type=int, default=3, help="simulation runs per head count")
    staffing.add_argument(
        "--max-agents", type=int, default=1000, help="most agents tried (default 1000)"
    )


def parse_time(text: str, name: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise UsageError(f"{name}: expected ISO 8601 or epoch seconds, got {text!r}") from None


def load_policy(path: Path) -> RoutingPolicy:
    """A routing policy from a TOML file: a policy document (``deploy/policies/*.toml``,
    read as PolicyService reads it: its ``[routing]`` table), a router configuration
    (its ``[routing]`` table), or a file whose top level is that table."""
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    if data and set(data) <= set(TABLES):  # a policy document
        try:
            tables = policy_tables(text)
        except PolicyDocumentError as exc:
            raise UsageError(f"{path}: {exc.reason}") from None
        if "routing" not in tables:
            raise UsageError(
                f"{path}: a policy document without [routing]: the domain's routing stays "
                "the configured default, so there is nothing to replay (pass it as --current)"
            )
        table = tables["routing"]
    else:
        table = data.get("routing", data)
    prefix = "routing." if "routing" in data else ""
    try:
        return RoutingPolicy.from_dict(table)
    except PolicyError as exc:
        raise UsageError(f"{path}: {prefix}{exc.reason}") from None


def _toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None


def _table(path: Path, data: Mapping[str, Any], *names: str) -> tuple[str, dict[str, Any]] | None:
    """The first of the tables ``names`` the file has, with its name."""
    for name in names:
        if name in data:
            table = data[name]
            if not isinstance(table, dict):
                raise UsageError(f"{path}: {name}: must be a table")
            return name, table
    return None


def _escalation_policy(path: Path, table: Mapping[str, Any]) -> EscalationPolicy:
    try:
        return EscalationPolicy.from_dict(table, prefix="escalation.")
    except EscalationPolicyError as exc:
        raise UsageError(f"{path}: {exc.reason}") from None


def _notification_policy(path: Path, name: str, table: Mapping[str, Any]) -> NotifierPolicy:
    try:
        return NotifierPolicy.from_dict(table)
    except NotifierPolicyError as exc:
        raise UsageError(f"{path}: {name}.{exc.reason}") from None


def downstream_policies(
    current: Path,
    proposed: Path,
    *,
    escalation: Path | None = None,
    notification: Path | None = None,
    catalog: TemplateCatalog | None = None,
) -> tuple[DownstreamPolicies, DownstreamPolicies]:
    """The escalation and notification policies of the current and the proposed side.

    The current side's: ``escalation``'s ``[escalation]`` table (``notification``'s
    ``[notification]``, or notifier.toml's ``[policy]``) when given, else the
    ``current`` file's table if it is a policy document that has one, else the default
    configuration's. The proposed side's: the ``proposed`` file's table if it has one,
    else the current side's."""
    if catalog is None:
        try:
            catalog = load_catalog(TEMPLATES)
        except TemplateError as exc:
            raise UsageError(f"notifier templates: {exc}") from None
    current_data, proposed_data = _toml(current), _toml(proposed)

    if escalation is not None:
        found = _table(escalation, _toml(escalation), "escalation")
        if found is None:
            raise UsageError(f"{escalation}: no [escalation] table")
        esc_now, esc_from = _escalation_policy(escalation, found[1]), escalation
    elif (found := _table(current, current_data, "escalation")) is not None:
        esc_now, esc_from = _escalation_policy(current, found[1]), current
    else:
        default = _table(DEFAULT_ESCALATION, _toml(DEFAULT_ESCALATION), "escalation")
        esc_now = _escalation_policy(DEFAULT_ESCALATION, default[1] if default else {})
        esc_from = DEFAULT_ESCALATION
    found = _table(proposed, proposed_data, "escalation")
    esc_new, esc_new_from = (
        (esc_now, esc_from) if found is None else (_escalation_policy(proposed, found[1]), proposed)
    )

    if notification is not None:
        found = _table(notification, _toml(notification), "notification", "policy")
        if found is None:
            raise UsageError(f"{notification}: no [notification] (or notifier [policy]) table")
        note_now, note_from = _notification_policy(notification, *found), notification
    elif (found := _table(current, current_data, "notification")) is not None:
        note_now, note_from = _notification_policy(current, *found), current
    else:
        default = _table(DEFAULT_NOTIFICATION, _toml(DEFAULT_NOTIFICATION), "policy")
        note_now = _notification_policy(DEFAULT_NOTIFICATION, *(default or ("policy", {})))
        note_from = DEFAULT_NOTIFICATION
    found = _table(proposed, proposed_data, "notification")
    note_new, note_new_from = (
        (note_now, note_from)
        if found is None
        else (_notification_policy(proposed, *found), proposed)
    )
    return (
        DownstreamPolicies(
            esc_now, note_now, catalog, f"escalation {esc_from}, notification {note_from}"
        ),
        DownstreamPolicies(
            esc_new, note_new, catalog, f"escalation {esc_new_from}, notification {note_new_from}"
        ),
    )


# ---------------------------------------------------------------------------- output


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def _total(figures: Figures, f: QueueFigures, attr: str) -> str:
    return "-" if figures.outcomes_missing else str(sum(getattr(f, attr).values()))


def _by_name(sides: Sequence[Figures], attr: str) -> list[tuple[str, list[str]]]:
    """Every reason (or kind) counted on any side, the most frequent first, with each
    side's count ("-" where not counted)."""
    totals = [Counter[str]() for _ in sides]
    for total, figures in zip(totals, sides, strict=True):
        for f in figures.queues.values():
            total.update(getattr(f, attr))
    names = sorted(
        {name for total in totals for name in total}, key=lambda n: (-max(t[n] for t in totals), n)
    )
    return [
        (
            name,
            [
                "-" if figures.outcomes_missing else str(total[name])
                for total, figures in zip(totals, sides, strict=True)
            ],
        )
        for name in names
    ]


def _footnote(label: str, sides: Sequence[Figures], attr: str) -> str | None:
    named = _by_name(sides, attr)
    if not named:
        return None
    shown = ", ".join(f"{name} {'/'.join(counts)}" for name, counts in named[:TOP])
    more = f" (and {len(named) - TOP} more)" if len(named) > TOP else ""
    return f"{label} (recorded/current/proposed): {shown}{more}"


def format_comparison(
    recorded: Figures,
    current: Figures,
    proposed: Figures,
    *,
    heading: Sequence[str] = (),
) -> str:
    """The side-by-side table: per queue, recorded | current policy | proposed policy."""
    sides = (recorded, current, proposed)
    queues = list(dict.fromkeys([*current.queues, *proposed.queues, *recorded.queues]))
    empty = QueueFigures("")
    metrics: list[tuple[str, str]] = [
        ("SERVICE LEVEL", "service_level"),
        ("ASA", "asa_s"),
        ("ABANDONED", "abandonment"),
        ("OCCUPANCY", "occupancy"),
        ("ESCALATIONS", "escalations"),
        ("NOTIFIED", "notifications"),
    ]
    cell = 9
    group = 3 * cell
    lines = list(heading)
    top = f"{'':<14}{'':>8} " + " ".join(f"| {name:^{group}}" for name, _ in metrics)
    sub = f"{'QUEUE':<14}{'OFFERED':>8} " + " ".join(
        f"| {'recorded':>{cell}}{'current':>{cell}}{'proposed':>{cell}}" for _ in metrics
    )
    lines += [top, sub]
    for queue in queues:
        row = [side.queues.get(queue, empty) for side in sides]
        offered = max(f.offered for f in row)
        cells = []
        for _, attr in metrics:
            if attr in ("escalations", "notifications"):
                shown = [_total(side, f, attr) for side, f in zip(sides, row, strict=True)]
            else:
                show = _secs if attr == "asa_s" else _pct
                shown = [show(getattr(f, attr)) for f in row]
            cells.append("| " + "".join(f"{text:>{cell}}" for text in shown))
        lines.append(f"{queue:<14}{offered:>8} " + " ".join(cells))
    lines.append(
        f"{'all agents':<14}{'':>8} "
        + " ".join(f"| {'':>{group}}" for _ in metrics[:3])
        + " | "
        + "".join(f"{_pct(f.occupancy):>{cell}}" for f in sides)
    )
    for name, figures in (("current", current), ("proposed", proposed)):
        for reason, count in sorted(figures.refused.items()):
            lines.append(f"{name} policy refused {count} input(s): {reason}")
        for queue, f in figures.queues.items():
            if f.refused:
                lines.append(f"{name} policy: {f.refused} arrival(s) for {queue} refused")
            if f.unroutable:
                lines.append(f"{name} policy: {f.unroutable} contact(s) of {queue} unroutable")
        for reason, count in sorted(figures.outcomes_refused.items()):
            lines.append(f"{name} policy: {count} input(s) refused by {reason}")
    for label, attr in (
        ("escalations raised by reason", "escalations"),
        ("notifications sent by kind", "notifications"),
        ("notifications held back by the policy (suppressed)", "suppressed"),
    ):
        footnote = _footnote(label, sides, attr)
        if footnote is not None:
            lines.append(footnote)
    undelivered = sum(sum(f.undelivered.values()) for f in recorded.queues.values())
    if undelivered:
        lines.append(
            f"recorded: {undelivered} notification(s) decided but never delivered "
            "(dead-lettered or rejected), not counted as sent"
        )
    if recorded.outcomes_missing:
        lines.append(f"recorded escalations and notifications: -, {recorded.outcomes_missing}")
    if current.outcomes_missing or proposed.outcomes_missing:
        lines.append("replayed escalations and notifications: not computed")
    else:
        lines.append(MODELLED)
    return "\n".join(lines)


def format_staffing(answer: StaffingAnswer, load: QueueLoad, source: str) -> str:
    patience = (
        f"patience {load.patience_s:.0f}s (exponential)" if load.patience_s > 0 else "no hang-ups"
    )
    lines = [
        f"fewest agents for {load.queue} to answer {answer.target:.0%} within "
        f"{answer.threshold_s:g}s (the router's rule: hang-ups after {answer.threshold_s:g}s "
        "count against it)",
        f"  {source}: {load.rate_per_s * 60:.2f} arrivals/min, handle {load.aht_s:.0f}s "
        f"(exponential), {patience}",
        f"  {'AGENTS':>6} | {'SIMULATED: SL':>13} {'ABANDON':>8} {'ASA':>8} {'OCCUPANCY':>9} "
        f"| {'ERLANG A: SL':>12} {'ABANDON':>8} {'ASA':>8} | {'ERLANG C: SL':>12}",
    ]
    for t in answer.trials:
        mark = "*" if t.agents == answer.agents else " "
        ea = t.erlang_a
        lines.append(
            f"{mark} {t.agents:>6} | {_pct(t.service_level):>13} {_pct(t.abandonment):>8} "
            f"{_secs(t.asa_s):>8} {_pct(t.occupancy):>9} "
            f"| {_pct(ea.router_service_level if ea else None):>12} "
            f"{_pct(ea.p_abandon if ea else None):>8} {_secs(ea.asa_s if ea else None):>8} "
            f"| {_pct(t.erlang_c_service_level):>12}"
        )
    found = "none within --max-agents" if answer.agents is None else f"{answer.agents} agents"
    lines.append(
        f"answer: {found} by simulation with the routing core; Erlang A: "
        f"{answer.erlang_a_agents or '-'}, Erlang C: {answer.erlang_c_agents or '-'}"
    )
    return "\n".join(lines)


def queue_load(recording: Recording, queue: str, threshold_s: float) -> QueueLoad:
    """The queue's demand measured on a recording: arrivals a second over the window,
    mean recorded handle time, and the exponential patience that best fits (maximum
    likelihood with censoring: recorded hang-ups / total seconds customers waited)."""
    counted = [c for c in recording.contacts if c.counted and c.arrival.queue == queue]
    if not counted:
        raise UsageError(f"--queue: no contact arrived in {queue!r} in the window")
    handles = [
        leg.handle_s
        for c in recording.contacts
        for leg in c.legs
        if leg.queue == queue and leg.handle_s is not None
    ]
    if not handles:
        raise UsageError(f"--queue: no contact of {queue!r} was handled in the window")
    waited = abandons = 0.0
    for c in recording.contacts:
        for leg in c.legs:
            if leg.queue != queue:
                continue
            until = leg.answered_at or leg.ended_at or recording.horizon
            waited += max(0.0, until - leg.enqueued_at)
            abandons += leg.answered_at is None and leg.end == LegEnd.ABANDONED
    return QueueLoad(
        queue=queue,
        skill=queue,
        rate_per_s=len(counted) / (recording.end - recording.start),
        aht_s=sum(handles) / len(handles),
        patience_s=waited / abandons if abandons else 0.0,
        service_level_s=threshold_s,
    )


# ---------------------------------------------------------------------------- running


def _kafka_settings(args: argparse.Namespace) -> KafkaSettings:
    settings = load_settings(_Settings, os.environ).kafka
    overrides: dict[str, str] = {}
    if args.bootstrap_servers:
        overrides["bootstrap_servers"] = args.bootstrap_servers
    if args.topic_prefix is not None:
        overrides["topic_prefix"] = args.topic_prefix
    return settings.model_copy(update=overrides)


def _topics(args: argparse.Namespace) -> Topics:
    return Topics(prefix=_kafka_settings(args).topic_prefix)


async def _read(args: argparse.Namespace, start: float, end: float) -> Recording:
    settings = _kafka_settings(args)
    warmup = max(0.0, args.warmup_minutes) * 60
    until = end + max(0.0, args.tail_minutes) * 60
    ranges = {
        Stream.CONTACT: (start - warmup, until),
        Stream.DECISION: (start - warmup, until),
        Stream.AGENT: (start - max(args.roster_hours * 3600, warmup), until),
    }
    topics = Topics(prefix=settings.topic_prefix)
    events, skipped = await read_window(settings, topics, args.domain, ranges)
    missing = ""
    try:
        decided, left_out = await read_outcomes(
            settings, topics, args.domain, start - warmup, until
        )
    except (KafkaError, OSError, RuntimeError, ValueError) as exc:
        missing = f"reading escalations and notifications failed: {str(exc)[:120]}"
    else:
        events.extend(decided)
        skipped.update(left_out)
    recording = build_recording(
        events,
        domain=args.domain,
        start=start,
        end=end,
        warmup_s=warmup,
        outcomes=not missing,
    )
    if missing:
        recording.outcomes_missing = missing
    recording.skipped.update(skipped)
    return recording


def _window(args: argparse.Namespace) -> tuple[float, float]:
    if not (args.domain and args.start and args.end):
        raise UsageError("--domain, --from and --to name the recorded window")
    start, end = parse_time(args.start, "--from"), parse_time(args.end, "--to")
    if not end > start:
        raise UsageError("--to must be after --from")
    return start, end


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def _run_replay(args: argparse.Namespace) -> str:
    if args.policy is None:
        raise UsageError("--policy: the proposed policy file is required (or --target)")
    if args.current is not None:
        return _replay_with(args, args.current, str(args.current))
    if not args.domain:
        raise UsageError("--domain, --from and --to name the recorded window")
    applied = asyncio.run(read_applied_policy(_kafka_settings(args), _topics(args), args.domain))
    if applied is None:
        label = f"{DEFAULT_POLICY} (the configured default: {args.domain} has no policy version)"
        return _replay_with(args, DEFAULT_POLICY, label)
    version, document = applied
    with tempfile.TemporaryDirectory(prefix="switchboard-whatif-") as directory:
        path = Path(directory) / f"{args.domain}-v{version}.toml"
        path.write_text(document, encoding="utf-8")
        return _replay_with(args, path, f"{args.domain}'s policy version {version} (applied)")


def _replay_with(args: argparse.Namespace, current_file: Path, current_label: str) -> str:
    args.current = current_file
    current, proposed = load_policy(args.current), load_policy(args.policy)
    downstream_now, downstream_new = downstream_policies(
        args.current,
        args.policy,
        escalation=args.escalation_policy,
        notification=args.notification_policy,
    )
    try:
        changes = [AgentChange.parse(text) for text in args.agents]
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    start, end = _window(args)
    recording = asyncio.run(_read(args, start, end))
    try:
        staffed = adjust_agents(recording, changes)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    patience = PatienceModel(args.patience)
    counted = sum(c.counted for c in recording.contacts)
    heading = [
        f"what-if for domain {args.domain}: {counted} contacts arrived "
        f"{_clock(start)} .. {_clock(end)} (replayed from {_clock(recording.replay_from)})",
        f"current: {current_label}   proposed: {args.policy}   patience: {patience.value}"
        + (f"   agents: {' '.join(args.agents)}" if args.agents else ""),
        f"current: {downstream_now.source}",
        f"proposed: {downstream_new.source}",
    ]
    for reason, count in sorted(recording.skipped.items()):
        heading.append(f"records left out: {count} ({reason})")
    heading.append("")
    return format_comparison(
        recorded_figures(recording, current),
        replay(recording, current, seed=args.seed, patience=patience, downstream=downstream_now),
        replay(staffed, proposed, seed=args.seed, patience=patience, downstream=downstream_new),
        heading=heading,
    )


def _run_staffing(args: argparse.Namespace) -> str:
    try:
        target, threshold = parse_target(args.target)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not args.queue:
        raise UsageError("--queue: the queue to staff is required with --target")
    if args.rate_per_minute is not None or args.aht_seconds is not None:
        if not (args.rate_per_minute and args.aht_seconds):
            raise UsageError("--rate-per-minute and --aht-seconds: give both (or a window)")
        if args.rate_per_minute <= 0 or args.aht_seconds <= 0 or args.patience_seconds < 0:
            raise UsageError("--rate-per-minute, --aht-seconds: > 0; --patience-seconds: >= 0")
        load = QueueLoad(
            queue=args.queue,
            skill=args.queue,
            rate_per_s=args.rate_per_minute / 60,
            aht_s=args.aht_seconds,
            patience_s=args.patience_seconds,
            service_level_s=threshold,
        )
        source = "given"
    else:
        start, end = _window(args)
        load = queue_load(asyncio.run(_read(args, start, end)), args.queue, threshold)
        source = f"measured on {args.domain}'s recorded window"
    if not 0 < args.hours <= 1000 or not 1 <= args.seeds <= 100:
        raise UsageError("--hours: 0-1000; --seeds: 1-100")
    try:
        answer = fewest_agents(
            load,
            target,
            hours=args.hours,
            seeds=range(1, args.seeds + 1),
            max_agents=args.max_agents,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return format_staffing(answer, load, source)


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Replay or staff, for the options of :func:`add_arguments`; print; the exit status.
    Runs its own event loop (call it from a thread when one is running)."""
    try:
        output = _run_staffing(args) if args.target else _run_replay(args)
    except (UsageError, ConfigError) as exc:
        print(f"whatif: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # the window (empty, too large)
        print(f"whatif: {exc}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError, KafkaError) as exc:
        print(f"whatif: reading Kafka failed: {exc}", file=sys.stderr)
        return 1
    print(output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
