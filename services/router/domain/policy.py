"""Routing policy: queues, strategies, relaxation steps, capacity, aging. Validated once.

Built from a plain dict (parsed TOML) by :meth:`RoutingPolicy.from_dict`; a bad value
raises :class:`PolicyError` whose reason starts with the field path, e.g.
``queues.billing-en.offer_timeout_s: must be > 0``. Example::

    [routing]
    aging_s_per_priority = {vip = 120, callback = 60}
    capacity = {voice = 1, chat = 3, email = 5, sms = 3, social = 3}
    max_total = 5                      # contacts at once across channels
    position_refresh_s = 2.0
    fallback_queue = "billing-en"      # optional: where contacts of a queue a policy
                                       # change removes wait (else they are parked)

    [routing.queues.billing-en]
    skills = {billing = 3}             # skill -> minimum proficiency
    optional_skills = {refunds = 5}    # required until a relaxation step drops them
    language = "en"
    strategy = "longest_idle"          # most_proficient | least_occupied | round_robin
    service_level_s = 20
    service_level_target = 0.8
    offer_timeout_s = 15
    wrap_up_s = 10
    steps = [
      {after_s = 30, min_proficiency_delta = 2, drop_optional_skills = true},
      {after_s = 60, release_preferred_agent = true, overflow_queues = ["billing-ru"]},
    ]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from services.common.policy_document import PolicyDocumentError, policy_tables
from services.router.domain.errors import PolicyError
from services.router.domain.model import Channel, Priority

_E = TypeVar("_E", Priority, Channel)

__all__ = ["QueuePolicy", "RelaxationStep", "RoutingPolicy", "Strategy", "policy_from_document"]


class Strategy(StrEnum):
    """How to choose among eligible agents (``index.strategy_key`` is the order):

    - LONGEST_IDLE: idle longest, then lowest agent id;
    - MOST_PROFICIENT: highest level in the contact's most demanding skill, then idle
      longest, then lowest id;
    - LEAST_OCCUPIED: lowest share of capacity in use, then idle longest, then lowest id;
    - ROUND_ROBIN: offered least recently (by offer sequence), then lowest id; agents
      never offered anything share sequence 0, so among them the lowest id goes first.
    """

    LONGEST_IDLE = "longest_idle"
    MOST_PROFICIENT = "most_proficient"
    LEAST_OCCUPIED = "least_occupied"
    ROUND_ROBIN = "round_robin"


@dataclass(frozen=True, slots=True)
class RelaxationStep:
    """After ``after_s`` seconds of waiting, the contact's requirements loosen."""

    after_s: float
    min_proficiency_delta: int = 0
    drop_optional_skills: bool = False
    release_preferred_agent: bool = False
    overflow_queues: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    name: str
    skills: tuple[tuple[str, int], ...]
    optional_skills: tuple[tuple[str, int], ...] = ()
    language: str = ""
    strategy: Strategy = Strategy.LONGEST_IDLE
    service_level_s: float = 20.0
    service_level_target: float = 0.8
    offer_timeout_s: float = 15.0
    wrap_up_s: float = 10.0
    steps: tuple[RelaxationStep, ...] = ()
    #: Release the preferred agent after this wait even without a step saying so.
    preferred_agent_timeout_s: float = 30.0


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    queues: Mapping[str, QueuePolicy]
    aging_s_per_priority: Mapping[Priority, float]
    capacity: Mapping[Channel, int]
    max_total: int = 5
    position_refresh_s: float = 2.0
    #: Initial average handle time for estimates, until real ones are seen.
    default_handle_s: float = 180.0
    #: Where a waiting contact goes when a policy change removes its queue ("": nowhere,
    #: it is parked and reported unroutable). A queue of this policy.
    fallback_queue: str = ""

    def boost(self, priority: Priority) -> float:
        """Seconds of waiting a priority is worth: the contact sorts as if it came earlier."""
        return self.aging_s_per_priority.get(priority, 0.0)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RoutingPolicy:
        known = {
            "queues",
            "aging_s_per_priority",
            "capacity",
            "max_total",
            "position_refresh_s",
            "default_handle_s",
            "fallback_queue",
        }
        _no_unknown(data, known, "")
        raw_queues = data.get("queues")
        if not isinstance(raw_queues, Mapping) or not raw_queues:
            raise PolicyError("queues: at least one queue is required")
        queues = {name: _queue(name, raw) for name, raw in raw_queues.items()}
        for queue in queues.values():
            for i, step in enumerate(queue.steps):
                for target in step.overflow_queues:
                    if target not in queues:
                        path = f"queues.{queue.name}.steps.{i}.overflow_queues"
                        raise PolicyError(f"{path}: unknown queue {target!r}")
        fallback = data.get("fallback_queue", "")
        if not isinstance(fallback, str):
            raise PolicyError(f"fallback_queue: must be a queue name, got {fallback!r}")
        if fallback and fallback not in queues:
            raise PolicyError(f"fallback_queue: unknown queue {fallback!r}")
        aging = {
            _enum(Priority, key, f"aging_s_per_priority.{key}"): _number(
                value, f"aging_s_per_priority.{key}", minimum=0
            )
            for key, value in _table(
                data.get("aging_s_per_priority", {"vip": 120, "callback": 60}),
                "aging_s_per_priority",
            ).items()
        }
        capacity = {
            Channel.VOICE: 1,
            Channel.CHAT: 3,
            Channel.EMAIL: 5,
            Channel.SMS: 3,
            Channel.SOCIAL: 3,
        }
        for key, value in _table(data.get("capacity", {}), "capacity").items():
            capacity[_enum(Channel, key, f"capacity.{key}")] = int(
                _number(value, f"capacity.{key}", minimum=0)
            )
        return cls(
            queues=queues,
            aging_s_per_priority=aging,
            capacity=capacity,
            max_total=int(_number(data.get("max_total", 5), "max_total", minimum=1)),
            position_refresh_s=_number(
                data.get("position_refresh_s", 2.0), "position_refresh_s", minimum=0.1
            ),
            default_handle_s=_number(
                data.get("default_handle_s", 180.0), "default_handle_s", minimum=1
            ),
            fallback_queue=fallback,
        )


def policy_from_document(document: str, default: RoutingPolicy) -> RoutingPolicy:
    """The routing policy of a domain's policy document (``policy.proto``): its
    ``[routing]`` table, or ``default`` (the configured one) if it has none. Pure; a
    :class:`PolicyError` names the field, e.g. ``routing.queues.x.service_level_s: ...``."""
    try:
        tables = policy_tables(document)
    except PolicyDocumentError as exc:
        raise PolicyError(exc.reason) from None
    routing = tables.get("routing")
    if routing is None:
        return default
    try:
        return RoutingPolicy.from_dict(routing)
    except PolicyError as exc:
        raise PolicyError(f"routing.{exc.reason}") from None


def _no_unknown(data: Mapping[str, Any], known: set[str], path: str) -> None:
    for key in data:
        if key not in known:
            raise PolicyError(f"{path}{key}: unknown field")


def _table(raw: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{path}: must be a table")
    return raw


def _names(raw: Any, path: str) -> tuple[str, ...]:
    if not isinstance(raw, list | tuple) or not all(isinstance(n, str) for n in raw):
        raise PolicyError(f"{path}: must be a list of queue names")
    return tuple(raw)


def _number(
    value: Any, path: str, *, minimum: float | None = None, above: float | None = None
) -> float:
    if isinstance(value, str):  # from an environment override
        try:
            value = float(value)
        except ValueError:
            raise PolicyError(f"{path}: must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyError(f"{path}: must be a number, got {value!r}")
    if minimum is not None and value < minimum:
        raise PolicyError(f"{path}: must be >= {minimum}")
    if above is not None and value <= above:
        raise PolicyError(f"{path}: must be > {above}")
    return float(value)


def _enum(kind: type[_E], key: str, path: str) -> _E:
    try:
        return kind[key.upper()]
    except KeyError:
        choices = ", ".join(m.name.lower() for m in kind)
        raise PolicyError(f"{path}: unknown {kind.__name__.lower()} (choose {choices})") from None


def _skills(raw: Any, path: str) -> tuple[tuple[str, int], ...]:
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{path}: must be a table of skill = minimum proficiency")
    out = []
    for skill, level in raw.items():
        value = _number(level, f"{path}.{skill}", minimum=1)
        if value > 10:
            raise PolicyError(f"{path}.{skill}: proficiency is 1-10")
        out.append((str(skill), int(value)))
    return tuple(out)


def _queue(name: str, raw: Any) -> QueuePolicy:
    path = f"queues.{name}"
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{path}: must be a table")
    _no_unknown(
        raw,
        {
            "skills",
            "optional_skills",
            "language",
            "strategy",
            "service_level_s",
            "service_level_target",
            "offer_timeout_s",
            "wrap_up_s",
            "steps",
            "preferred_agent_timeout_s",
        },
        f"{path}.",
    )
    try:
        strategy = Strategy(raw.get("strategy", "longest_idle"))
    except ValueError:
        choices = ", ".join(s.value for s in Strategy)
        raise PolicyError(f"{path}.strategy: unknown strategy (choose {choices})") from None
    target = _number(
        raw.get("service_level_target", 0.8), f"{path}.service_level_target", minimum=0
    )
    if target > 1:
        raise PolicyError(f"{path}.service_level_target: must be between 0 and 1")
    steps = []
    previous = 0.0
    raw_steps = raw.get("steps", [])
    if not isinstance(raw_steps, list | tuple):
        raise PolicyError(f"{path}.steps: must be a list of tables")
    for i, step in enumerate(raw_steps):
        spath = f"{path}.steps.{i}"
        if not isinstance(step, Mapping):
            raise PolicyError(f"{spath}: must be a table")
        _no_unknown(
            step,
            {
                "after_s",
                "min_proficiency_delta",
                "drop_optional_skills",
                "release_preferred_agent",
                "overflow_queues",
            },
            f"{spath}.",
        )
        after = _number(step.get("after_s"), f"{spath}.after_s", above=0)
        if after < previous:
            raise PolicyError(f"{spath}.after_s: steps must be in increasing order")
        previous = after
        steps.append(
            RelaxationStep(
                after_s=after,
                min_proficiency_delta=int(
                    _number(
                        step.get("min_proficiency_delta", 0),
                        f"{spath}.min_proficiency_delta",
                        minimum=0,
                    )
                ),
                drop_optional_skills=bool(step.get("drop_optional_skills", False)),
                release_preferred_agent=bool(step.get("release_preferred_agent", False)),
                overflow_queues=_names(step.get("overflow_queues", []), f"{spath}.overflow_queues"),
            )
        )
    return QueuePolicy(
        name=name,
        skills=_skills(raw.get("skills", {}), f"{path}.skills"),
        optional_skills=_skills(raw.get("optional_skills", {}), f"{path}.optional_skills"),
        language=str(raw.get("language", "")),
        strategy=strategy,
        service_level_s=_number(raw.get("service_level_s", 20), f"{path}.service_level_s", above=0),
        service_level_target=target,
        offer_timeout_s=_number(raw.get("offer_timeout_s", 15), f"{path}.offer_timeout_s", above=0),
        wrap_up_s=_number(raw.get("wrap_up_s", 10), f"{path}.wrap_up_s", minimum=0),
        steps=tuple(steps),
        preferred_agent_timeout_s=_number(
            raw.get("preferred_agent_timeout_s", 30), f"{path}.preferred_agent_timeout_s", minimum=0
        ),
    )
