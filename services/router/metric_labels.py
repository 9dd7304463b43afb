"""Which routing domains get their own ``domain`` label on the router's metrics.

Every per-queue and per-agent series carries ``domain``. With thousands of tenants one
series per tenant would swamp Prometheus, so the label has a bounded set of values:

- the domains named in ``metrics.domains`` always label themselves;
- up to ``metrics.top_domains`` more label themselves once they are busy: the first ones
  whose traffic (events applied) reaches ``metrics.top_domains_min_events`` while a slot
  is free. Traffic is counted with a bounded heavy-hitters sketch (Misra-Gries), so a
  busy tenant is found among thousands of quiet ones in bounded memory;
- every other domain is :data:`OTHER`.

A domain that has its own label keeps it for the life of the process (no flapping: a
series never moves back into "other"). A domain in "other" may later get a free slot;
its earlier counts stay in "other", so ``sum by (queue)`` stays right across the move.
Slots are per router instance: each instance labels the busiest of the domains it owns.

:func:`domain_label` is the rule; :class:`DomainLabels` keeps its state. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass

__all__ = ["MAX_LABELLED", "OTHER", "DomainLabels", "LabelPolicy", "domain_label"]

#: The label of every domain without its own.
OTHER = "other"
#: At most this many named plus top domains (each multiplies the router's series).
MAX_LABELLED = 100


@dataclass(frozen=True, slots=True)
class LabelPolicy:
    """``metrics.domains``, ``metrics.top_domains`` and ``metrics.top_domains_min_events``."""

    named: frozenset[str] = frozenset()
    top: int = 0
    min_events: int = 100

    def __post_init__(self) -> None:
        if OTHER in self.named:
            raise ValueError(f"metrics.domains: {OTHER!r} is the label of unnamed domains")
        if self.top < 0 or self.min_events < 1:
            raise ValueError("metrics.top_domains must be >= 0, top_domains_min_events >= 1")
        if len(self.named) + self.top > MAX_LABELLED:
            raise ValueError(
                f"metrics.domains + metrics.top_domains: at most {MAX_LABELLED} labelled domains"
            )


def domain_label(domain: str, policy: LabelPolicy, holders: Set[str], events: int) -> str:
    """The ``domain`` label value for ``domain`` now.

    ``holders``: the domains that already hold a top slot (at most ``policy.top``);
    ``events``: the domain's counted traffic. A named domain or a slot holder is itself;
    another domain is itself only if a slot is free and its traffic reached
    ``policy.min_events`` (the caller then records it as a holder); else :data:`OTHER`.
    """
    if domain in policy.named or domain in holders:
        return domain
    if len(holders) < policy.top and events >= policy.min_events and domain != OTHER:
        return domain
    return OTHER


class DomainLabels:
    """The state behind :func:`domain_label`: slot holders and bounded traffic counts.

    Memory is bounded whatever the number of domains: at most ``policy.top`` holders and
    ``candidates`` counters (Misra-Gries: when the table is full, a new domain decrements
    every counter and zeros are dropped, so any domain with more than 1/(candidates+1)
    of the traffic is still counted). Counting stops once every slot is taken.
    """

    def __init__(self, policy: LabelPolicy | None = None, candidates: int = 0) -> None:
        self.policy = policy or LabelPolicy()
        self.candidates = candidates or max(32, 4 * self.policy.top)
        self._holders: set[str] = set()
        self._counts: dict[str, int] = {}

    def observe(self, domain: str) -> None:
        """Count one event of ``domain``; give it a free top slot if it earned one."""
        policy = self.policy
        if domain in policy.named or domain in self._holders or len(self._holders) >= policy.top:
            return
        count = self._counts.get(domain)
        if count is not None:
            self._counts[domain] = count + 1
        elif len(self._counts) < self.candidates:
            self._counts[domain] = 1
        else:  # full: this event cancels one count of every candidate
            self._counts = {d: n - 1 for d, n in self._counts.items() if n > 1}
            return
        if domain_label(domain, policy, self._holders, self._counts[domain]) == domain:
            self._holders.add(domain)
            del self._counts[domain]
            if len(self._holders) >= policy.top:
                self._counts.clear()  # every slot is taken: nothing left to count for

    def label(self, domain: str) -> str:
        """The label ``domain``'s series carry now."""
        return domain_label(domain, self.policy, self._holders, 0)

    def values(self) -> list[str]:
        """Every label value in use (named, slot holders, and :data:`OTHER`), sorted."""
        return sorted({*self.policy.named, *self._holders, OTHER})

    @property
    def tracked(self) -> int:
        """Domains remembered (holders and counted candidates): bounded, see the class."""
        return len(self._holders) + len(self._counts)
