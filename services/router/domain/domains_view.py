"""Every domain's routing state as its owner last committed it, so that whichever router
replica a RouterAdmin call reaches answers it for every domain (issue #15, item 4).

The owner of a domain writes its entities (agents, contacts, queue counters, sequence
numbers, its applied policy version and document; ``RoutingCore.take_changes``) to the
compacted router changelog in the same transaction as its decisions. Every replica
reads all partitions of that changelog, committed records only, into a
:class:`DomainsView`. Asked about a domain, the view rebuilds the domain's
:class:`RoutingCore` from the stored snapshots with :meth:`RoutingCore.restore` (with
the domain's own policy), exactly as a new owner does at a takeover, so the figures
come from the same ``queue_stats``, ``agent_views`` and ``contact_view`` as the owner's
own answer: one definition of every number, whoever renders it. Nothing more is written
to Kafka for this.

Bounded: at most ``max_domains`` domains and ``max_bytes`` of stored snapshots. A record
that would pass either bound makes its domain *incomplete*: the view forgets what it
held of that domain and refuses the rest of its records (until the process restarts),
and a call that needs such a domain is told so (:class:`ViewIncomplete`) instead of
being given part of the picture. Rebuilt cores are cached (``max_cores``, least
recently used out) and rebuilt at most every ``rebuild_after_s`` while their domain
changes, so a busy domain asked about in a loop costs one restore per interval.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from services.router.domain.core import RoutingCore
from services.router.domain.policy import RoutingPolicy

__all__ = ["DomainsView", "ViewIncomplete", "ViewLimits"]

#: The changelog entities a core is restored from ("<kind>:<id>"; "policy:" is the
#: domain's applied policy, so the view rebuilds it with its own); the others (the
#: dedupe window's "~seen/<n>" chunks) are not part of what RouterAdmin shows.
VIEW_KINDS = frozenset({"agent", "contact", "queue", "meta", "policy"})
#: Bytes counted per stored entity on top of its name and snapshot (dict slots, index).
ENTRY_OVERHEAD = 96


class ViewIncomplete(Exception):
    """The view cannot answer for a domain the caller may see (it passed a bound)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ViewLimits:
    max_domains: int = 100_000
    max_bytes: int = 128 * 1024 * 1024
    max_cores: int = 256
    rebuild_after_s: float = 0.5


@dataclass
class _Domain:
    entities: dict[str, bytes] = field(default_factory=dict)
    size: int = 0
    version: int = 0


@dataclass
class _Built:
    core: RoutingCore
    version: int
    at: float


def _cost(entity: str, value: bytes) -> int:
    return len(entity) + len(value) + ENTRY_OVERHEAD


class DomainsView:
    """The latest committed snapshots of every domain, and cores rebuilt from them."""

    def __init__(self, policy: RoutingPolicy, limits: ViewLimits | None = None) -> None:
        self.policy = policy
        self.limits = limits or ViewLimits()
        self._domains: dict[str, _Domain] = {}
        #: Domains the view gave up on (bounded like the domains themselves) ...
        self._incomplete: set[str] = set()
        #: ... and whether it gave up on more than it could name.
        self.overflowed = False
        #: Records refused so far (for a counter).
        self.refused = 0
        self.size = 0
        self._contacts: dict[str, set[str]] = {}  # contact id -> domains holding it
        self._built: OrderedDict[str, _Built] = OrderedDict()

    # -- feeding ---------------------------------------------------------------------

    def put(self, domain: str, entity: str, value: bytes | None) -> str | None:
        """Apply one changelog record (``None``: the entity was deleted). Returns why, the
        moment the view gives up on ``domain`` (to log once); otherwise ``None``."""
        kind, _, ident = entity.partition(":")
        if kind not in VIEW_KINDS:
            return None
        if domain in self._incomplete:
            self.refused += 1
            return None
        held = self._domains.get(domain)
        if held is None:
            if value is None:
                return None
            if len(self._domains) >= self.limits.max_domains:
                return self._give_up(domain, f"more than {self.limits.max_domains} domains")
            held = self._domains[domain] = _Domain()
        old = held.entities.pop(entity, None)
        if old is not None:
            self._resize(held, -_cost(entity, old))
        if value is None:
            if kind == "contact":
                self._unindex(ident, domain)
        else:
            cost = _cost(entity, value)
            if self.size + cost > self.limits.max_bytes:
                return self._give_up(domain, f"more than {self.limits.max_bytes} bytes of state")
            held.entities[entity] = value
            self._resize(held, cost)
            if kind == "contact":
                self._contacts.setdefault(ident, set()).add(domain)
        held.version += 1
        if not held.entities:
            self._forget(domain)
        return None

    def _resize(self, held: _Domain, delta: int) -> None:
        held.size += delta
        self.size += delta

    def _unindex(self, contact_id: str, domain: str) -> None:
        domains = self._contacts.get(contact_id)
        if domains is not None:
            domains.discard(domain)
            if not domains:
                del self._contacts[contact_id]

    def _forget(self, domain: str) -> None:
        held = self._domains.pop(domain, None)
        self._built.pop(domain, None)
        if held is None:
            return
        self.size -= held.size
        for entity in held.entities:
            kind, _, ident = entity.partition(":")
            if kind == "contact":
                self._unindex(ident, domain)

    def _give_up(self, domain: str, why: str) -> str:
        self._forget(domain)
        self.refused += 1
        if len(self._incomplete) < self.limits.max_domains:
            self._incomplete.add(domain)
        else:
            self.overflowed = True
        return f"domain {domain!r} left out of the read view: {why}"

    # -- reading ---------------------------------------------------------------------

    def domains(self) -> list[str]:
        return sorted(self._domains)

    def __len__(self) -> int:
        return len(self._domains)

    @property
    def incomplete(self) -> int:
        return len(self._incomplete)

    def plan(
        self, owned: Collection[str], sees: Callable[[str], bool], only: str = ""
    ) -> list[str]:
        """The domains a call answers for, sorted: those the caller ``sees`` (only ``only``
        if given), whether ``owned`` (answered from live state) or held here. Raises
        :class:`ViewIncomplete` if one the caller may see is in neither, because the
        view gave up on it: a partial answer would pass for a whole one."""
        if only:
            if not sees(only):
                return []
            if only in owned or only in self._domains:
                return [only]
            if only in self._incomplete or self.overflowed:
                raise ViewIncomplete(self._why([only]))
            return []
        missing = sorted(d for d in self._incomplete if sees(d) and d not in owned)
        if missing or self.overflowed:
            raise ViewIncomplete(self._why(missing))
        return sorted(d for d in {*owned, *self._domains} if sees(d))

    def _why(self, domains: list[str]) -> str:
        named = f"domains {', '.join(domains[:5])}{' ...' if len(domains) > 5 else ''}"
        return (
            f"the read view of other replicas' domains is full ({named if domains else 'some'}"
            " left out); raise admin_view.max_domains / max_bytes, or ask with a domain"
            " this replica owns"
        )

    def contact_domains(self, contact_id: str) -> list[str]:
        """Domains whose stored state holds ``contact_id``."""
        return sorted(self._contacts.get(contact_id, ()))

    def core(self, domain: str, now: float) -> RoutingCore | None:
        """The domain's core as last committed (at most ``rebuild_after_s`` older while it
        changes), or ``None`` if the view holds nothing of it."""
        held = self._domains.get(domain)
        if held is None:
            return None
        built = self._built.get(domain)
        if built is not None and (
            built.version == held.version or 0 <= now - built.at < self.limits.rebuild_after_s
        ):
            self._built.move_to_end(domain)
            return built.core
        try:
            snapshots = {entity: json.loads(value) for entity, value in held.entities.items()}
            core = RoutingCore.restore(self.policy, snapshots)
        except (ValueError, KeyError, TypeError) as exc:  # written by an incompatible router
            why = self._give_up(domain, f"its stored state does not restore ({exc!r})")
            raise ViewIncomplete(why) from None
        self._built[domain] = _Built(core, held.version, now)
        self._built.move_to_end(domain)
        while len(self._built) > self.limits.max_cores:
            self._built.popitem(last=False)
        return core
