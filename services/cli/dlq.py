"""``switchboard dlq list|show|replay``: the services' dead letters.

Each service writes what it refused to its own topic, ``<service>.dlq``: the original
key, value and headers, with ``dlq.*`` headers saying why (``dlq.reason``,
``dlq.error``), which event (``dlq.event_id``) and where from (``dlq.source.topic``,
``.partition``, ``.offset``); or, for an output it could not deliver or persist, the
topic it was going to (``dlq.original.topic``). A dead letter is named by its place,
``SERVICE:PARTITION:OFFSET`` (e.g. ``router:2:17``), as ``list`` prints it.

``replay`` sends dead letters back to their source topic, with their original key and
headers and a ``dlq.replayed-from`` header. A record several services refused is sent
once. Services skip an event id they have applied before (within their dedupe window,
1 h by default), and remember only what they applied: a replayed event reaches again
exactly the services that refused it.

The selection, formatting and replay planning here are pure; ``kafka_client`` does the I/O.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format

from services.cli import kafka_client
from services.cli.kafka_options import add_kafka_options, kafka_settings
from services.cli.proto_text import utc_text
from services.common.access import ACCESS, REPLAY_TOPICS
from services.common.codec import decode_envelope
from services.common.config import KafkaSettings
from services.common.errors import ConfigError, DecodeError
from services.common.kafka import REPLAYED_FROM_HEADER, InboundRecord, OutboundRecord
from services.common.log_setup import mask_contact_details, mask_text
from services.common.topics import DLQ_SUFFIX, Topics

__all__ = [
    "SERVICES",
    "DeadLetter",
    "Filters",
    "LetterId",
    "Replay",
    "Skipped",
    "list_lines",
    "plan_replay",
    "register",
    "replay_lines",
    "show_text",
    "why_not_replayable",
]

#: The services with a dead-letter topic, in the order they are listed.
SERVICES = tuple(ACCESS)
Headers = tuple[tuple[str, bytes], ...]
#: Characters of a reason shown on a ``list`` line (``show`` has it whole).
LIST_REASON_CHARS = 300
#: Characters of an undecodable text value ``show`` prints.
SHOW_TEXT_CHARS = 4000


@dataclass(frozen=True, slots=True, order=True)
class LetterId:
    """Where a dead letter is: its service's dead-letter topic, partition and offset."""

    service: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.service}:{self.partition}:{self.offset}"

    @classmethod
    def parse(cls, text: str) -> LetterId:
        service, _, place = text.partition(":")
        partition, _, offset = place.partition(":")
        if (
            len(text) > 100
            or service not in SERVICES
            or not partition.isdigit()
            or not offset.isdigit()
        ):
            raise ConfigError(
                f"{text[:100]!r}: a dead letter is named SERVICE:PARTITION:OFFSET as "
                f"`switchboard dlq list` prints it, with SERVICE one of {', '.join(SERVICES)}"
            )
        return cls(service, int(partition), int(offset))


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of a service's dead-letter topic."""

    id: LetterId
    topic: str
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: Headers

    @classmethod
    def of(cls, service: str, record: InboundRecord) -> DeadLetter:
        return cls(
            id=LetterId(service, record.partition, record.offset),
            topic=record.topic,
            timestamp_ms=record.timestamp_ms,
            key=record.key,
            value=record.value,
            headers=tuple(record.headers),
        )

    def header(self, name: str) -> str:
        """The last value of header ``name`` as text ("" without one)."""
        for key, value in reversed(self.headers):
            if key == name:
                return value.decode("utf-8", "replace")
        return ""

    @property
    def reason(self) -> str:
        return " ".join(self.header("dlq.reason").split())

    @property
    def error(self) -> str:
        return self.header("dlq.error") or "?"

    @property
    def event_id(self) -> str:
        return self.header("dlq.event_id")

    @property
    def source(self) -> tuple[str, int, int] | None:
        """The consumed record it was, (topic, partition, offset), if it was one."""
        topic = self.header("dlq.source.topic")
        partition, offset = self.header("dlq.source.partition"), self.header("dlq.source.offset")
        if not topic or not partition.isdigit() or not offset.isdigit():
            return None
        return topic, int(partition), int(offset)

    @property
    def output_of(self) -> str:
        """The topic it was going to, if it is an output the service gave up on (an
        undeliverable notification, a record too large to produce)."""
        original = self.header("dlq.original.topic")
        return "" if original.endswith(DLQ_SUFFIX) else original

    @property
    def topic_of_origin(self) -> str:
        """The topic it concerns: the output's, else the source's."""
        source = self.source
        return self.output_of or (source[0] if source else "?")

    @property
    def origin(self) -> str:
        """``contact.events/2@41``, or ``escalations (output for contact.events/2@41)``."""
        source = self.source
        where = f"{source[0]}/{source[1]}@{source[2]}" if source else ""
        if self.output_of:
            return f"{self.output_of} (output{f' for {where}' if where else ''})"
        return where or "?"

    def original_headers(self) -> Headers:
        """The headers the original record had (every ``dlq.*`` one removed)."""
        return tuple(h for h in self.headers if not h[0].startswith("dlq."))


@dataclass(frozen=True, slots=True)
class Filters:
    """Which dead letters: each non-empty set must contain the letter's value."""

    services: frozenset[str] = frozenset()
    topics: frozenset[str] = frozenset()  # full names, the prefix applied
    errors: frozenset[str] = frozenset()
    event_ids: frozenset[str] = frozenset()

    def accepts(self, letter: DeadLetter) -> bool:
        return (
            (not self.services or letter.id.service in self.services)
            and (not self.topics or letter.topic_of_origin in self.topics)
            and (not self.errors or letter.error in self.errors)
            and (not self.event_ids or letter.event_id in self.event_ids)
        )


# --- list ------------------------------------------------------------------------------


def _newest_first(letters: Iterable[DeadLetter]) -> list[DeadLetter]:
    return sorted(
        letters, key=lambda d: (d.timestamp_ms, d.id.partition, d.id.offset), reverse=True
    )


def list_line(letter: DeadLetter) -> str:
    """time, service, where from, event id, error kind, reason (masked, cut), and its name."""
    reason = mask_text(letter.reason)
    if len(reason) > LIST_REASON_CHARS:
        reason = reason[: LIST_REASON_CHARS - 1] + "…"
    return (
        f"{letter.id}  {utc_text(letter.timestamp_ms)}  {letter.id.service}  {letter.origin}  "
        f"{letter.event_id or '-'}  {letter.error}  {reason}"
    )


def list_lines(
    letters: Sequence[DeadLetter], *, limit: int, unread: Sequence[str] = ()
) -> list[str]:
    """Per service and topic: how many, then the newest ``limit``, one line each.
    ``unread`` names dead-letter topics with older records that were not read."""
    groups: dict[tuple[int, str, str], list[DeadLetter]] = {}
    for letter in letters:
        rank = _in_service_order(letter)[0]
        groups.setdefault((rank, letter.topic, letter.topic_of_origin), []).append(letter)
    lines: list[str] = []
    for (_, dlq_topic, topic), group in sorted(groups.items()):
        count = f"{len(group)} dead letter{'' if len(group) == 1 else 's'}"
        shown = "" if len(group) <= limit else f", the newest {limit} below"
        lines.append(f"{dlq_topic} from {topic}: {count}{shown}")
        lines.extend(f"  {list_line(letter)}" for letter in _newest_first(group)[:limit])
    if not letters:
        lines.append("no dead letters")
    lines.extend(
        f"({topic}: older records were not read; raise --scan to count them)" for topic in unread
    )
    return lines


# --- show ------------------------------------------------------------------------------


def _masked_json(data: Any) -> str:
    """``data`` as indented JSON, names, phones and e-mails masked as in the logs."""
    masked = mask_contact_details(None, "", {"value": data})["value"]
    return json.dumps(masked, indent=2, ensure_ascii=False)


def _body(letter: DeadLetter) -> list[str]:
    value = letter.value
    if value is None:
        return ["no value"]
    notes = []
    if letter.header("dlq.truncated") == "true":
        size = letter.header("dlq.original.size") or "?"
        notes.append(f"the value was cut to fit: {len(value)} of {size} bytes kept")
    try:
        envelope = decode_envelope(value, letter.original_headers())
    except DecodeError as exc:
        notes.append(f"not an envelope: {mask_text(' '.join(exc.reason.split()))}")
    else:
        data = json_format.MessageToDict(envelope, preserving_proto_field_name=True)
        payload = envelope.WhichOneof("payload")
        return [*notes, f"envelope ({payload}), personal details masked:", _masked_json(data)]
    try:
        parsed = json.loads(value)
    except (ValueError, RecursionError):
        pass
    else:
        return [*notes, "value (JSON), personal details masked:", _masked_json(parsed)]
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return [
            *notes,
            f"value: {len(value)} bytes of binary, not shown (it may hold personal details)",
        ]
    cut = "" if len(text) <= SHOW_TEXT_CHARS else f" (the first {SHOW_TEXT_CHARS} characters)"
    return [
        *notes,
        f"value (text{cut}), phones and e-mails masked:",
        mask_text(text[:SHOW_TEXT_CHARS]),
    ]


def _key_text(key: bytes | None) -> str:
    return "none" if key is None else mask_text(key[:200].decode("utf-8", "replace"))


def show_text(letter: DeadLetter, topics: Topics) -> str:
    """One dead letter decoded, with every header; personal details masked as in logs."""
    why = why_not_replayable(letter, topics)
    source = letter.source
    rows = [
        ("service", letter.id.service),
        ("error", letter.error),
        ("reason", mask_text(letter.reason)),
        ("from", letter.origin),
        ("event id", letter.event_id or "-"),
        ("key", _key_text(letter.key)),
    ]
    if replayed := letter.header(REPLAYED_FROM_HEADER):
        rows.append(("replay of", replayed))
    headers = ", ".join(
        f"{name}={mask_text(value.decode('utf-8', 'replace'))}"
        for name, value in letter.original_headers()
    )
    rows.append(("headers", headers or "none"))
    rows.append(("replay", f"to {source[0]}" if why is None and source else f"no: {why}"))
    lines = [
        f"dead letter {letter.id}: {letter.topic} partition {letter.id.partition} "
        f"offset {letter.id.offset}, {utc_text(letter.timestamp_ms)}",
        *(f"  {name:<10} {value}" for name, value in rows),
        *_body(letter),
    ]
    return "\n".join(lines)


# --- replay ----------------------------------------------------------------------------


def _in_service_order(letter: DeadLetter) -> tuple[int, int, int]:
    service = letter.id.service
    rank = SERVICES.index(service) if service in SERVICES else len(SERVICES)
    return rank, letter.id.partition, letter.id.offset


def why_not_replayable(letter: DeadLetter, topics: Topics) -> str | None:
    """None if ``letter`` can go back to its source topic, else why not."""
    source = letter.source
    replay_topics = [topics.name(t) for t in REPLAY_TOPICS]
    if letter.output_of:
        return f"an output of {letter.id.service} (to {letter.output_of}), not an input to resend"
    if source is None:
        return "no source topic, partition and offset in its headers"
    if letter.header("dlq.truncated") == "true":
        return "its value was cut to fit: the original record is not there to resend"
    if letter.value is None:
        return "it has no value"
    if source[0] not in replay_topics:
        return f"{source[0]} is a service's output; replays go only to {', '.join(replay_topics)}"
    return None


@dataclass(frozen=True, slots=True)
class Replay:
    """One record to send back, for the dead letters of it (one per refusing service)."""

    letters: tuple[DeadLetter, ...]
    record: OutboundRecord
    #: Older than the services' dedupe window: a service that applied it may apply it again.
    stale: bool


@dataclass(frozen=True, slots=True)
class Skipped:
    letter: DeadLetter
    why: str


def plan_replay(
    letters: Iterable[DeadLetter], topics: Topics, *, now_ms: int, dedupe_window_s: float
) -> tuple[list[Replay], list[Skipped]]:
    """What ``replay`` sends: each source record once (several services may have refused
    it), in source order, with its original key and headers, no ``dlq.*`` header but
    ``dlq.replayed-from`` (the first dead letter of it)."""
    skipped: list[Skipped] = []
    by_source: dict[tuple[str, int, int], list[DeadLetter]] = {}
    for letter in sorted(set(letters), key=_in_service_order):
        why = why_not_replayable(letter, topics)
        source = letter.source
        if why is not None or source is None:
            skipped.append(Skipped(letter, why or "no source"))
            continue
        by_source.setdefault(source, []).append(letter)
    replays = []
    for (topic, _, _), same in sorted(by_source.items()):
        first = same[0]
        replayed_from = f"{first.topic}/{first.id.partition}/{first.id.offset}"
        record = OutboundRecord(
            topic=topic,
            value=first.value,
            key=first.key,
            headers=(*first.original_headers(), (REPLAYED_FROM_HEADER, replayed_from.encode())),
        )
        oldest = min(d.timestamp_ms for d in same)
        stale = now_ms - oldest > dedupe_window_s * 1000
        replays.append(Replay(tuple(same), record, stale))
    return replays, skipped


def replay_lines(
    replays: Sequence[Replay],
    skipped: Sequence[Skipped],
    *,
    dedupe_window_s: float,
    placed: Sequence[tuple[int, int]] | None = None,
) -> list[str]:
    """What was sent (``placed``: partition and offset of each) or, in a dry run
    (``placed`` None), what would be; what was skipped and why."""
    lines = []
    for i, replay in enumerate(replays):
        out = replay.record
        names = ", ".join(str(d.id) for d in replay.letters)
        what = (
            f"(key {_key_text(out.key)}, event {replay.letters[0].event_id or '-'}, "
            f"{len(out.value or b'')} bytes)"
        )
        if placed is None:
            lines.append(f"would send {names} -> {out.topic} {what}")
        else:
            partition, offset = placed[i]
            lines.append(
                f"sent {names} -> {out.topic} partition {partition} offset {offset} {what}"
            )
        if replay.stale:
            lines.append(
                f"  note: older than the services' dedupe window ({dedupe_window_s:g} s): a "
                "service that applied it then may apply it again"
            )
    lines.extend(f"skipped {s.letter.id}: {s.why}" for s in skipped)
    verb = "would be sent" if placed is None else "sent"
    summary = (
        f"{len(replays)} record{'' if len(replays) == 1 else 's'} {verb}, {len(skipped)} skipped"
    )
    lines.append(f"dry run: {summary}; nothing was sent" if placed is None else summary)
    return lines


# --- the commands ----------------------------------------------------------------------


def _bounded(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value

    return parse


def _filters(args: argparse.Namespace, topics: Topics) -> Filters:
    return Filters(
        services=frozenset(args.service or ()),
        topics=frozenset(
            t if t.startswith(topics.prefix) and topics.prefix else topics.name(t)
            for t in args.topic or ()
        ),
        errors=frozenset(args.error or ()),
        event_ids=frozenset(args.event_id or ()),
    )


async def _scan(
    settings: KafkaSettings, topics: Topics, filters: Filters, per_partition: int, *, values: bool
) -> tuple[list[DeadLetter], list[str], list[str]]:
    """The dead letters ``filters`` accepts among the newest ``per_partition`` of each
    service's topic; the topics with older records unread, and those missing."""
    letters: list[DeadLetter] = []
    unread, missing = [], []
    for service in SERVICES:
        if filters.services and service not in filters.services:
            continue
        topic = topics.dead_letters(service)

        def keep(record: InboundRecord, service: str = service) -> bool:
            return filters.accepts(DeadLetter.of(service, record))

        tail = await kafka_client.read_tail(
            settings, topic, per_partition=per_partition, keep=keep, with_values=values
        )
        if tail is None:
            missing.append(topic)
            continue
        letters.extend(DeadLetter.of(service, record) for record in tail.records)
        if tail.older:
            unread.append(topic)
    return letters, unread, missing


def _missing(missing: Sequence[str]) -> None:
    for topic in missing:
        print(f"({topic}: no such topic, or not visible to this user)")


async def _list(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = kafka_settings(args, env)
    topics = Topics(settings.topic_prefix)
    letters, unread, missing = await _scan(
        settings, topics, _filters(args, topics), args.scan, values=False
    )
    print("\n".join(list_lines(letters, limit=args.limit, unread=unread)))
    _missing(missing)
    return 0


async def _fetch(settings: KafkaSettings, topics: Topics, letter_id: LetterId) -> DeadLetter:
    topic = topics.dead_letters(letter_id.service)
    record = await kafka_client.read_at(settings, topic, letter_id.partition, letter_id.offset)
    if record is None:
        raise LookupError(f"no dead letter {letter_id} in {topic} (aged out? see `dlq list`)")
    return DeadLetter.of(letter_id.service, record)


async def _show(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = kafka_settings(args, env)
    topics = Topics(settings.topic_prefix)
    letter = await _fetch(settings, topics, LetterId.parse(args.id))
    print(show_text(letter, topics))
    return 0


async def _replay(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = kafka_settings(args, env)
    topics = Topics(settings.topic_prefix)
    filters = _filters(args, topics)
    ids = [LetterId.parse(text) for text in args.ids]
    filtered = filters != Filters() or args.all
    if ids and filtered:
        raise ConfigError("name dead letters, or select them with --all/--event-id and filters")
    if not ids and not args.all and not filters.event_ids:
        raise ConfigError("say which: dead letter names (from `dlq list`), --event-id, or --all")
    if ids:
        letters = [await _fetch(settings, topics, letter_id) for letter_id in ids]
    else:
        letters, unread, missing = await _scan(settings, topics, filters, args.scan, values=True)
        _missing(missing)
        for topic in unread:
            print(f"({topic}: older records were not read; raise --scan to include them)")
    if len(letters) > args.max:
        raise ConfigError(
            f"{len(letters)} dead letters selected, more than --max {args.max}: narrow the "
            "selection (--service, --topic, --error, --event-id) or raise --max"
        )
    replays, skipped = plan_replay(
        letters, topics, now_ms=int(time.time() * 1000), dedupe_window_s=args.dedupe_window_s
    )
    placed = None
    if not args.dry_run and replays:
        placed = await kafka_client.send(settings, [r.record for r in replays])
    elif not args.dry_run:
        placed = []
    print(
        "\n".join(
            replay_lines(replays, skipped, dedupe_window_s=args.dedupe_window_s, placed=placed)
        )
    )
    return 0


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--service", action="append", choices=SERVICES, help="only this service's (repeatable)"
    )
    parser.add_argument(
        "--topic",
        action="append",
        help="only those from this topic, e.g. contact.events (repeatable; the prefix is added)",
    )
    parser.add_argument(
        "--error",
        action="append",
        help="only this kind: decode, rejected, partition, handler, too_large, undeliverable "
        "(repeatable)",
    )
    parser.add_argument(
        "--event-id", action="append", help="only the dead letters of this event id (repeatable)"
    )
    parser.add_argument(
        "--scan",
        type=_bounded(1, 100_000),
        default=1000,
        help="read the newest this many offsets of each partition (default 1000)",
    )


def register(commands: Any, formatter: type[argparse.HelpFormatter]) -> None:
    """Add ``dlq`` and its subcommands to the ``switchboard`` parser."""
    dlq = commands.add_parser(
        "dlq",
        help="dead letters: list, show, replay",
        description="Dead letters: what each service refused, kept in its own topic, "
        "<service>.dlq: the original record with dlq.reason, dlq.error, dlq.event_id and "
        "dlq.source.* headers. A dead letter is named SERVICE:PARTITION:OFFSET, as `list` "
        "prints it.",
        formatter_class=formatter,
    )
    add_kafka_options(dlq)
    actions = dlq.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser(
        "list",
        help="per service and topic: how many, then one line each, newest first",
        description="Per service and source topic: how many dead letters, then one line "
        "each, newest first: name, time (UTC), service, source topic/partition@offset, "
        "event id, error kind, reason.",
        formatter_class=formatter,
    )
    _add_filters(listing)
    listing.add_argument(
        "--limit",
        type=_bounded(1, 10_000),
        default=50,
        help="lines per service and topic (default 50)",
    )
    listing.set_defaults(run=_list)

    show = actions.add_parser(
        "show",
        help="one dead letter, decoded, personal details masked",
        description="One dead letter: its headers, and its value decoded as an envelope "
        "(or as JSON or text when it is not one), names, phones and e-mails masked as in "
        "the logs.",
        formatter_class=formatter,
    )
    show.add_argument("id", help="SERVICE:PARTITION:OFFSET, as `dlq list` prints it")
    show.set_defaults(run=_show)

    replay = actions.add_parser(
        "replay",
        help="send dead letters back to their source topic",
        description="Send dead letters back to their source topic (contact.events or "
        "agent.events) with their original key and headers and a dlq.replayed-from header; "
        "a record several services refused is sent once. Services skip an event id they "
        "applied before (within their dedupe window, 1 h by default) and remember only "
        "what they applied, so a replayed event reaches again exactly the services that "
        "refused it. Select by name, or with --event-id or --all and filters; --dry-run "
        "sends nothing.",
        formatter_class=formatter,
    )
    replay.add_argument(
        "ids", nargs="*", metavar="ID", help="SERVICE:PARTITION:OFFSET, as `dlq list` prints it"
    )
    replay.add_argument("--all", action="store_true", help="every dead letter the filters select")
    _add_filters(replay)
    replay.add_argument(
        "--dry-run", action="store_true", help="print what would be sent; send nothing"
    )
    replay.add_argument(
        "--max",
        type=_bounded(1, 100_000),
        default=1000,
        help="refuse to replay more dead letters than this (default 1000)",
    )
    replay.add_argument(
        "--dedupe-window-s",
        type=float,
        default=3600.0,
        help="the services' dedupe window (kafka.dedupe_max_age_s, default 3600): older "
        "dead letters are flagged, since a service that applied them may apply them again",
    )
    replay.set_defaults(run=_replay)
    for parser in (listing, show, replay):
        add_kafka_options(parser, repeat=True)
