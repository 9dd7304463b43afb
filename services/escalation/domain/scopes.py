"""Which teams a manager sees, domain by domain: every domain's escalation policy as
applied, for the instance answering Watch and ListOpen for all of them.

A person's teams are their domain's policy's rule (:meth:`EscalationPolicy.teams_visible_to`:
the teams they staff, plus ``access`` grants), so in a domain whose policy names them
nowhere they see nothing, and a team of the same name in another tenant is not theirs
unless that tenant's policy says so. The owner of a domain checks commands with the same
policy (its core's); this is the read side's copy, fed from the ``policies`` topic.

Versions only move forward (a record not newer than the one held is ignored, as the
owner refuses it). Bounded: past ``max_domains`` a new domain is not kept and
:attr:`complete` turns false, so callers are refused rather than shown a wrong scope.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from services.escalation.domain.errors import PermissionDenied
from services.escalation.domain.model import Escalation
from services.escalation.domain.policy import EscalationPolicy

__all__ = ["DomainPolicies"]


@dataclass
class DomainPolicies:
    """The configured default, and each domain's applied version and policy."""

    default: EscalationPolicy
    max_domains: int = 10_000
    _by_domain: dict[str, tuple[int, EscalationPolicy]] = field(default_factory=dict)
    #: Domains left out because the book was full.
    refused: int = 0

    @property
    def complete(self) -> bool:
        return self.refused == 0

    def __len__(self) -> int:
        return len(self._by_domain)

    def policy_for(self, domain: str) -> EscalationPolicy:
        held = self._by_domain.get(domain)
        return self.default if held is None else held[1]

    def version_for(self, domain: str) -> int:
        held = self._by_domain.get(domain)
        return 0 if held is None else held[0]

    def apply(self, domain: str, version: int, policy: EscalationPolicy) -> bool:
        """Hold ``policy`` as ``domain``'s if ``version`` is newer; whether it was."""
        if version <= self.version_for(domain):
            return False
        if domain not in self._by_domain and len(self._by_domain) >= self.max_domains:
            self.refused += 1
            return False
        self._by_domain[domain] = (version, policy)
        return True

    def teams_visible_to(self, person: str) -> frozenset[str]:
        """The teams ``person`` sees in some domain (the default's and every policy's)."""
        teams = set(self.default.teams_visible_to(person))
        for _, policy in self._by_domain.values():
            teams |= policy.teams_visible_to(person)
        return frozenset(teams)

    def teams_to_show(self, person: str, requested: Collection[str]) -> frozenset[str]:
        """The teams ``person`` asked for (all they see somewhere if none were named);
        :class:`PermissionDenied` names any requested team they see in no domain."""
        visible = self.teams_visible_to(person)
        if not requested:
            return visible
        denied = set(requested) - visible
        if denied:
            raise PermissionDenied(f"{person} may not see team(s) {sorted(denied)}")
        return frozenset(requested)

    def visible_to(self, person: str) -> Callable[[Escalation], bool]:
        """Whether ``person`` sees an escalation under its own domain's policy (each
        domain's teams worked out once per call of the returned function's owner)."""
        teams: dict[str, frozenset[str]] = {}

        def sees(e: Escalation) -> bool:
            found = teams.get(e.domain)
            if found is None:
                found = teams[e.domain] = self.policy_for(e.domain).teams_visible_to(person)
            return e.team in found

        return sees
