"""structlog, configured once per process.

JSON lines when stdout is not a terminal (production, CI), coloured key-value when it
is. Context is bound through contextvars (``bind_contextvars(contact_id=...)``) and
merged first. Customers' names, phone numbers and e-mail addresses are masked in every
event, in any script, because they must not reach log storage; identifiers, offsets and
sizes are not, so an operator can still grep for them.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from services.common.config import LogSettings

__all__ = [
    "IDENTIFIER_KEYS",
    "PERSONAL_KEYS",
    "configure_logging",
    "mask_contact_details",
    "mask_personal",
    "mask_text",
]

# An e-mail address in any script: keep the first letter of the local part and the domain.
_EMAIL = re.compile(r"(?<![\w.%+-])([\w%+-])[\w.%+-]*@([\w-]+(?:\.[\w-]+)*\.\w{2,})")
# A phone number: 7-15 digits, with an optional +, brackets, spaces, dots or dashes between
# them, and an optional extension ("ext 12", "x12", "доб. 12", "wew. 12"). Never part of a
# longer token (an id such as "c-600123456" or a hex event id is not a phone number).
_PHONE = re.compile(
    r"(?<![\w-])\+?\(?\d(?:[\s().-]{0,2}\d){6,14}"
    r"(?:\s*(?:ext\.?|x|доб\.?|wew\.?)\s*\d{1,6})?(?![\w-])",
    re.IGNORECASE,
)
_SEPARATED = re.compile(r"[\s().-]")
#: Keys whose values are people's details: masked whole, whatever they look like.
PERSONAL_KEYS = frozenset(
    {
        "name",
        "customer_name",
        "first_name",
        "last_name",
        "full_name",
        "phone",
        "email",
        "to",
        "address",
        "text",
        "body",
        "note",
        "notes",
        "subject",
    }
)
#: Keys whose values are identifiers, positions and sizes: never masked, so an operator
#: can grep a dead letter's event id or an offset (plus every key ending in ``_id``).
IDENTIFIER_KEYS = frozenset(
    {
        "id",
        "offset",
        "partition",
        "partitions",
        "topic",
        "domain",
        "queue",
        "team",
        "instance",
        "service",
        "size",
        "bytes",
        "version",
        "attempt",
        "level",
        "timestamp",
        "logger",
        "url",
        "port",
    }
)


def _mask_phone(match: re.Match[str]) -> str:
    number = match.group(0)
    digits = re.sub(r"\D", "", number)
    # A bare run of 7-8 digits with nothing phone-like about it is a count or a size.
    if len(digits) < 9 and not number.startswith(("+", "(")) and not _SEPARATED.search(number):
        return number
    return "***" + digits[-2:]


def mask_text(text: str) -> str:
    """Mask e-mail addresses (keep first letter and domain) and phone numbers (keep the
    last 2 digits) in free text, in any script."""
    text = _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)
    return _PHONE.sub(_mask_phone, text)


def mask_personal(value: str) -> str:
    """A value known to be personal: an address or a number alone masked as in free text,
    anything else (a name, a message body) down to its first character."""
    stripped = value.strip()
    if not stripped:
        return value
    if _EMAIL.fullmatch(stripped) or _PHONE.fullmatch(stripped):
        return mask_text(stripped)
    return f"{stripped[0]}***"


def _mask(value: Any, key: str = "") -> Any:
    if key.endswith("_id") or key in IDENTIFIER_KEYS:
        return value
    if isinstance(value, str):
        return mask_personal(value) if key in PERSONAL_KEYS else mask_text(value)
    if isinstance(value, dict):
        return {k: _mask(item, str(k)) for k, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_mask(item, key) for item in value)
    return value


def mask_contact_details(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: people's names, phone numbers and e-mail addresses masked in
    every value, whatever the key; identifiers, offsets and sizes left as they are."""
    for key, value in event_dict.items():
        event_dict[key] = _mask(value, key)
    return event_dict


def configure_logging(
    settings: LogSettings, *, stream: Any = None, cache_loggers: bool = False
) -> None:
    """Configure structlog for this process; safe to call more than once.

    Services pass ``cache_loggers=True`` (configured once, before their first log line):
    otherwise every log call, even a filtered-out debug line, rebuilds its logger, which
    cost the router about 2 % of its time per event.
    """
    out = stream or sys.stdout
    pretty = settings.format == "console" or (settings.format == "auto" and out.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=out.isatty())
        if pretty
        else structlog.processors.JSONRenderer()
    )
    shared: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            mask_contact_details,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[settings.level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=cache_loggers,
    )
    _route_library_logs(out, renderer, shared, settings)


class KnownRetryNoise(logging.Filter):
    """aiokafka's warning for a produce it retries after NOT_ENOUGH_REPLICAS.

    The cause, on a healthy broker: Kafka 4 verifies every transactional write against its
    transaction (KIP-890). aiokafka speaks an older produce version, and a write that
    races the verification of the partition it has just added to the transaction is
    answered with the retriable NOT_ENOUGH_REPLICAS, which the client retries at once
    (2 ms backoff) and which then succeeds. One producer per partition committing
    back to back makes the race common: about one line every few seconds on a quiet
    one-broker run. A real shortage of replicas fails the transaction, which the loop
    logs ("transaction failed; retrying") with the error.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.name == "aiokafka.producer.sender"
            and "NotEnoughReplicasError" in record.getMessage()
        )


def _route_library_logs(out: Any, renderer: Any, shared: list[Any], settings: LogSettings) -> None:
    """Libraries' stdlib logs (aiokafka, grpc) as the same JSON lines, masked, at the
    configured level (they used to reach stderr raw)."""
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                mask_contact_details,
                renderer,
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    handler.addFilter(KnownRetryNoise())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(max(logging.WARNING, logging.getLevelNamesMapping()[settings.level.upper()]))
