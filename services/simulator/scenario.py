"""Scenarios: what a simulated contact center looks like, read from ``deploy/scenarios/*.toml``.

A scenario names the queues (skill, language, channel mix), the agent groups (skills,
languages, capacity, shift), the arrival rate and its profile over the run, and how people
behave (patience, handle times, holds, missed offers, surveys). Everything has a default
that makes a calm contact center, so a scenario file only states what makes it different.
Parsing is pure: a bad value raises :class:`ScenarioError` naming the file and the field.

A scenario may add other tenants (routing domains) served by the same instances, each
with its own queues, agents and arrivals (behaviour and channel profiles are the main
tenant's unless it says otherwise)::

    [[tenants]]
    domain = "wroclaw"
    [tenants.arrivals]
    rate = 0.08
    [[tenants.queues]]
    name = "faktury"
    ...
    [[tenants.agents]]
    ...

Their traffic only routes once each tenant's policy (its queues) is applied: ``make run``
applies ``deploy/policies/<domain>.toml`` before the simulator starts.
"""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast

from services.simulator.errors import ScenarioError

__all__ = [
    "CHANNELS",
    "LANGUAGES",
    "SCENARIO_DIR",
    "AgentGroup",
    "Behaviour",
    "BrokerRestart",
    "ChannelName",
    "ChannelProfile",
    "QueueSpec",
    "Scenario",
    "Span",
    "load_scenario",
    "parse_scenario",
    "resolve_scenario_path",
]

ChannelName = Literal["voice", "chat", "email"]
CHANNELS: tuple[ChannelName, ...] = ("voice", "chat", "email")
LANGUAGES: tuple[str, ...] = ("en", "ru", "pl")
SCENARIO_DIR = Path(__file__).resolve().parents[2] / "deploy" / "scenarios"


@dataclass(frozen=True, slots=True)
class Span:
    """A uniform range of seconds (or any quantity) ``[low, high]``."""

    low: float
    high: float


@dataclass(frozen=True, slots=True)
class ChannelProfile:
    """How contacts of one channel behave: patience, handling time, holds or pauses."""

    #: Mean patience (exponential) above ``patience_min``; customers hang up after it.
    patience_mean: float
    patience_min: float
    #: Mean handling time (exponential) above ``handle_min``.
    handle_mean: float
    handle_min: float
    #: Probability that the agent puts the contact on hold (voice) or pauses it (chat, e-mail).
    interrupt: float
    #: The hold or pause length the customer is told.
    interrupt_expected: Span


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A queue: one skill in one language, fed by a mix of channels."""

    name: str
    skill: str
    language: str
    min_proficiency: int
    weight: float
    channels: tuple[tuple[ChannelName, float], ...]
    optional_skill: str = ""


@dataclass(frozen=True, slots=True)
class AgentGroup:
    """Agents of one team with the same skills, languages, capacity and shift."""

    team: str
    count: int
    skills: tuple[tuple[str, int], ...]
    languages: tuple[str, ...]
    capacity: tuple[tuple[ChannelName, int], ...]
    #: Seconds after the start when the group logs in (a late shift starts later).
    login_at: float = 0.0
    #: Seconds after the start when the group logs out; ``None`` means at the end.
    logout_at: float | None = None


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How agents and customers act, as probabilities and ranges of seconds."""

    miss_offer: float = 0.04
    reject_offer: float = 0.02
    ring: Span = field(default_factory=lambda: Span(1.0, 4.0))
    recover_after_miss: Span = field(default_factory=lambda: Span(3.0, 10.0))
    resolve: float = 0.85
    callback: float = 0.05
    manager_request: float = 0.03
    survey: float = 0.4
    low_score: float = 0.15
    survey_delay: Span = field(default_factory=lambda: Span(2.0, 8.0))
    #: Mean seconds between an agent's breaks (exponential); 0 disables breaks.
    break_every: float = 300.0
    break_length: Span = field(default_factory=lambda: Span(20.0, 60.0))
    #: Probability that a hold or pause runs past what the customer was told.
    overrun: float = 0.15
    repeat_customer: float = 0.1
    vip: float = 0.05
    #: Probability that a customer told a wait longer than their patience hangs up early.
    abandon_on_long_estimate: float = 0.3


@dataclass(frozen=True, slots=True)
class BrokerRestart:
    """The launcher stops the broker at ``at`` seconds and starts it ``downtime`` later."""

    at: float
    downtime: float


def _default_channels() -> dict[ChannelName, ChannelProfile]:
    return {
        "voice": ChannelProfile(60.0, 15.0, 35.0, 10.0, 0.3, Span(10.0, 30.0)),
        "chat": ChannelProfile(120.0, 30.0, 50.0, 15.0, 0.25, Span(15.0, 45.0)),
        "email": ChannelProfile(600.0, 300.0, 25.0, 10.0, 0.2, Span(30.0, 90.0)),
    }


@dataclass(frozen=True, slots=True)
class Scenario:
    """A whole simulated contact center."""

    name: str
    description: str
    domain: str
    #: Default run length in seconds; 0 means until stopped.
    duration: float
    #: Contact arrivals per second at profile multiplier 1.0.
    rate: float
    #: ``(seconds since start, multiplier)`` points, linearly interpolated; the last holds.
    profile: tuple[tuple[float, float], ...]
    queues: tuple[QueueSpec, ...]
    agents: tuple[AgentGroup, ...]
    channels: Mapping[ChannelName, ChannelProfile] = field(default_factory=_default_channels)
    behaviour: Behaviour = field(default_factory=Behaviour)
    broker_restart: BrokerRestart | None = None
    #: Other tenants simulated beside this one (each a scenario of its own domain, with no
    #: tenants or broker restart of its own).
    tenants: tuple[Scenario, ...] = ()

    @property
    def all_tenants(self) -> tuple[Scenario, ...]:
        """This tenant, then the others."""
        return (self, *self.tenants)

    def multiplier(self, elapsed: float) -> float:
        """The arrival-rate multiplier ``elapsed`` seconds into the run."""
        points = self.profile
        if elapsed <= points[0][0]:
            return points[0][1]
        for (t0, m0), (t1, m1) in itertools.pairwise(points):
            if elapsed <= t1:
                return m0 + (m1 - m0) * (elapsed - t0) / (t1 - t0)
        return points[-1][1]

    def rate_at(self, elapsed: float) -> float:
        """Arrivals per second ``elapsed`` seconds into the run."""
        return self.rate * self.multiplier(elapsed)

    @property
    def peak_rate(self) -> float:
        return self.rate * max(m for _, m in self.profile)

    def with_rate(self, rate: float) -> Scenario:
        """The same scenario at another base rate (``--rate``); the other tenants' rates
        scale by the same factor."""
        factor = rate / self.rate if self.rate > 0 else 1.0
        tenants = tuple(replace(t, rate=t.rate * factor) for t in self.tenants)
        return replace(self, rate=rate, tenants=tenants)

    def with_domain(self, domain: str) -> Scenario:
        """The main tenant under another domain (``--domain``); it must not be another's."""
        if domain in {t.domain for t in self.tenants}:
            raise ScenarioError(f"--domain {domain!r} is one of the scenario's other tenants")
        return replace(self, domain=domain)


class _Reader:
    """Reads typed fields from a TOML table; errors name ``file: path.to.field``."""

    def __init__(self, source: str, table: Mapping[str, Any], path: str = "") -> None:
        self.source = source
        self.table = table
        self.path = path

    def _where(self, key: str) -> str:
        return f"{self.source}: {self.path}{key}"

    def fail(self, key: str, message: str) -> ScenarioError:
        return ScenarioError(f"{self._where(key)}: {message}")

    def child(self, key: str) -> _Reader:
        value = self.table.get(key, {})
        if not isinstance(value, Mapping):
            raise self.fail(key, "expected a table")
        return _Reader(self.source, value, f"{self.path}{key}.")

    def items(self, key: str) -> list[_Reader]:
        value = self.table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
            raise self.fail(key, "expected an array of tables")
        return [_Reader(self.source, v, f"{self.path}{key}[{i}].") for i, v in enumerate(value)]

    def text(self, key: str, default: str | None = None) -> str:
        value = self.table.get(key, default)
        if not isinstance(value, str) or not value:
            raise self.fail(key, "expected a non-empty string")
        return value

    def number(
        self, key: str, default: float | None = None, *, low: float = 0.0, high: float | None = None
    ) -> float:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, "expected a number")
        if value < low or (high is not None and value > high):
            raise self.fail(
                key, f"{value} is outside [{low}, {high if high is not None else 'inf'}]"
            )
        return float(value)

    def probability(self, key: str, default: float) -> float:
        return self.number(key, default, low=0.0, high=1.0)

    def span(self, key: str, default: Span) -> Span:
        value = self.table.get(key)
        if value is None:
            return default
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
            or not 0 <= value[0] <= value[1]
        ):
            raise self.fail(key, "expected [low, high] with 0 <= low <= high")
        return Span(float(value[0]), float(value[1]))

    def weights(self, key: str, allowed: tuple[str, ...]) -> tuple[tuple[str, float], ...]:
        value = self.table.get(key)
        if not isinstance(value, Mapping) or not value:
            raise self.fail(key, f"expected a table of weights over {', '.join(allowed)}")
        result = []
        for name, weight in value.items():
            if name not in allowed:
                raise self.fail(key, f"unknown {name!r}; expected one of {', '.join(allowed)}")
            if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
                raise self.fail(f"{key}.{name}", "expected a non-negative number")
            result.append((str(name), float(weight)))
        if sum(w for _, w in result) <= 0:
            raise self.fail(key, "weights sum to zero")
        return tuple(result)


def _channel_profile(reader: _Reader, default: ChannelProfile) -> ChannelProfile:
    return ChannelProfile(
        patience_mean=reader.number("patience_mean", default.patience_mean),
        patience_min=reader.number("patience_min", default.patience_min),
        handle_mean=reader.number("handle_mean", default.handle_mean),
        handle_min=reader.number("handle_min", default.handle_min),
        interrupt=reader.probability("interrupt", default.interrupt),
        interrupt_expected=reader.span("interrupt_expected", default.interrupt_expected),
    )


def _behaviour(reader: _Reader) -> Behaviour:
    d = Behaviour()
    return Behaviour(
        miss_offer=reader.probability("miss_offer", d.miss_offer),
        reject_offer=reader.probability("reject_offer", d.reject_offer),
        ring=reader.span("ring", d.ring),
        recover_after_miss=reader.span("recover_after_miss", d.recover_after_miss),
        resolve=reader.probability("resolve", d.resolve),
        callback=reader.probability("callback", d.callback),
        manager_request=reader.probability("manager_request", d.manager_request),
        survey=reader.probability("survey", d.survey),
        low_score=reader.probability("low_score", d.low_score),
        survey_delay=reader.span("survey_delay", d.survey_delay),
        break_every=reader.number("break_every", d.break_every),
        break_length=reader.span("break_length", d.break_length),
        overrun=reader.probability("overrun", d.overrun),
        repeat_customer=reader.probability("repeat_customer", d.repeat_customer),
        vip=reader.probability("vip", d.vip),
        abandon_on_long_estimate=reader.probability(
            "abandon_on_long_estimate", d.abandon_on_long_estimate
        ),
    )


def _queue(reader: _Reader) -> QueueSpec:
    language = reader.text("language")
    if language not in LANGUAGES:
        raise reader.fail("language", f"{language!r} is not one of {', '.join(LANGUAGES)}")
    skill = reader.text("skill")
    return QueueSpec(
        name=reader.text("name", f"{skill}-{language}"),
        skill=skill,
        language=language,
        min_proficiency=int(reader.number("min_proficiency", 1, low=0, high=10)),
        weight=reader.number("weight", 1.0),
        channels=cast(tuple[tuple[ChannelName, float], ...], reader.weights("channels", CHANNELS)),
        optional_skill=str(reader.table.get("optional_skill", "")),
    )


def _agent_group(reader: _Reader) -> AgentGroup:
    skills_raw = reader.table.get("skills")
    if not isinstance(skills_raw, Mapping) or not skills_raw:
        raise reader.fail("skills", "expected a table of skill = proficiency (1-10)")
    skills = []
    for skill, level in skills_raw.items():
        if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 10:
            raise reader.fail(f"skills.{skill}", "expected an integer proficiency 1-10")
        skills.append((str(skill), level))
    languages = reader.table.get("languages")
    if (
        not isinstance(languages, list)
        or not languages
        or not all(isinstance(lang, str) for lang in languages)
    ):
        raise reader.fail("languages", "expected a non-empty list of language tags")
    capacity = reader.weights("capacity", CHANNELS) if "capacity" in reader.table else ()
    logout = reader.table.get("logout_at")
    return AgentGroup(
        team=reader.text("team"),
        count=int(reader.number("count", 1, low=0, high=10_000)),
        skills=tuple(skills),
        languages=tuple(languages),
        capacity=tuple((cast(ChannelName, ch), int(n)) for ch, n in capacity),
        login_at=reader.number("login_at", 0.0),
        logout_at=None if logout is None else reader.number("logout_at"),
    )


def _profile(reader: _Reader) -> tuple[tuple[float, float], ...]:
    raw = reader.table.get("profile", [[0, 1.0]])
    if not isinstance(raw, list) or not raw:
        raise reader.fail("profile", "expected [[seconds, multiplier], ...]")
    points: list[tuple[float, float]] = []
    for item in raw:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in item)
            or item[1] < 0
        ):
            raise reader.fail("profile", f"bad point {item!r}; expected [seconds, multiplier>=0]")
        if points and item[0] <= points[-1][0]:
            raise reader.fail("profile", "points must be in increasing time order")
        points.append((float(item[0]), float(item[1])))
    if max(m for _, m in points) <= 0:
        raise reader.fail("profile", "every multiplier is zero: nothing would arrive")
    return tuple(points)


def parse_scenario(data: Mapping[str, Any], source: str = "<scenario>") -> Scenario:
    """Build a :class:`Scenario` from parsed TOML; raise :class:`ScenarioError` naming the field."""
    root = _Reader(source, data)
    arrivals = root.child("arrivals")
    defaults = _default_channels()
    channels_table = root.child("channels")
    channels = {
        name: _channel_profile(channels_table.child(name), defaults[name]) for name in CHANNELS
    }
    queues = _queues(root)
    agents = tuple(_agent_group(a) for a in root.items("agents"))
    restart = None
    if "broker_restart" in data:
        table = root.child("broker_restart")
        restart = BrokerRestart(
            at=table.number("at", low=1.0), downtime=table.number("downtime", 10.0, low=1.0)
        )
    main = Scenario(
        name=root.text("name"),
        description=str(data.get("description", "")),
        domain=root.text("domain", "acme"),
        duration=root.number("duration", 0.0),
        rate=arrivals.number("rate", 0.25, low=0.0),
        profile=_profile(arrivals),
        queues=queues,
        agents=agents,
        channels=channels,
        behaviour=_behaviour(root.child("behaviour")),
        broker_restart=restart,
    )
    tenants = tuple(_tenant(t, main) for t in root.items("tenants"))
    domains = [t.domain for t in (main, *tenants)]
    if len(set(domains)) != len(domains):
        raise root.fail("tenants", f"domains must be unique, got {domains}")
    return replace(main, tenants=tenants)


def _queues(reader: _Reader) -> tuple[QueueSpec, ...]:
    queues = tuple(_queue(q) for q in reader.items("queues"))
    if not queues:
        raise reader.fail("queues", "at least one [[queues]] is needed")
    if len({q.name for q in queues}) != len(queues):
        raise reader.fail("queues", "queue names must be unique")
    return queues


def _tenant(reader: _Reader, main: Scenario) -> Scenario:
    """Another tenant: its domain, queues, agents and arrivals; the rest is the main's."""
    for key in reader.table:
        if key not in ("domain", "description", "arrivals", "queues", "agents", "behaviour"):
            raise reader.fail(key, "unknown field of a tenant")
    domain = reader.text("domain")
    arrivals = reader.child("arrivals")
    return Scenario(
        name=f"{main.name}/{domain}",
        description=str(reader.table.get("description", "")),
        domain=domain,
        duration=main.duration,
        rate=arrivals.number("rate", main.rate, low=0.0),
        profile=_profile(arrivals) if "profile" in arrivals.table else main.profile,
        queues=_queues(reader),
        agents=tuple(_agent_group(a) for a in reader.items("agents")),
        channels=main.channels,
        behaviour=(
            _behaviour(reader.child("behaviour")) if "behaviour" in reader.table else main.behaviour
        ),
    )


def resolve_scenario_path(name_or_path: str, directory: Path = SCENARIO_DIR) -> Path:
    """``quiet-day`` -> ``deploy/scenarios/quiet-day.toml``; a path is used as given."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.exists():
        return candidate
    return directory / f"{name_or_path}.toml"


def load_scenario(name_or_path: str, directory: Path = SCENARIO_DIR) -> Scenario:
    """Read and validate a scenario by name (from ``deploy/scenarios``) or by path."""
    path = resolve_scenario_path(name_or_path, directory)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        known = sorted(p.stem for p in directory.glob("*.toml"))
        raise ScenarioError(
            f"scenario not found: {path} (known scenarios: {', '.join(known) or 'none'})"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    return parse_scenario(data, str(path))
