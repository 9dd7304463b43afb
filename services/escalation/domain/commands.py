"""Managers' commands as the owner of a domain receives them, from whichever instance took
the gRPC call, and what the owner makes of them.

The instance that took the call has checked the caller; the owner checks again, here,
against its own state: the command names the caller (:class:`Requester`: subject, roles
and the part of their token's scope the command needs), and :func:`run_command` decides
with the core (which adds the policy's rule: the teams the person staffs or was granted).
What the caller may not see is NOT_FOUND, as if it did not exist. A command read after
its deadline is not applied: the caller has been told it timed out.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from services.escalation.domain.core import EscalationCore
from services.escalation.domain.errors import (
    CommandError,
    InvalidArgument,
    InvalidTransition,
    PermissionDenied,
)
from services.escalation.domain.model import CommandResult, Escalation, EscalationChange

__all__ = [
    "ALL",
    "MANAGER",
    "Acknowledge",
    "AddNote",
    "CommandAnswer",
    "CommandOutcome",
    "CommandStatus",
    "ManagerCommand",
    "Requester",
    "Resolve",
    "run_command",
]

#: A scope entry granting every team (or domain), as in the callers' tokens.
ALL = "*"
#: The role every escalation command needs.
MANAGER = "manager"


@dataclass(frozen=True, slots=True)
class Acknowledge:
    escalation_id: str


@dataclass(frozen=True, slots=True)
class AddNote:
    escalation_id: str
    text: str


@dataclass(frozen=True, slots=True)
class Resolve:
    escalation_id: str
    resolution_code: str
    note: str = ""


ManagerCommand = Acknowledge | AddNote | Resolve


@dataclass(frozen=True, slots=True)
class Requester:
    """Who asked, as the instance that took the call verified them."""

    subject: str
    roles: frozenset[str]
    #: The token's team scope the command needs ("*": every team).
    teams: frozenset[str]
    #: The token's domain scope the command needs ("*": every domain).
    domains: frozenset[str]

    def sees(self, e: Escalation) -> bool:
        """Whether the token's scope covers ``e`` (the policy is the core's to check)."""
        return (ALL in self.domains or e.domain in self.domains) and (
            ALL in self.teams or e.team in self.teams
        )

    @staticmethod
    def scope_for(scope: frozenset[str], value: str) -> frozenset[str]:
        """The part of a token's ``scope`` a command on ``value`` (a team, a domain) needs:
        ``{"*"}``, ``{value}`` or nothing."""
        if ALL in scope:
            return frozenset({ALL})
        return frozenset({value}) if value in scope else frozenset()


class CommandStatus(IntEnum):
    """``switchboard.v1.EscalationCommandStatus`` (same numbers)."""

    OK = 1
    NOT_FOUND = 2
    FAILED_PRECONDITION = 3
    INVALID_ARGUMENT = 4
    PERMISSION_DENIED = 5
    EXPIRED = 6
    REJECTED = 7

    @property
    def slug(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class CommandAnswer:
    """What the instance that took the call learns from the owner: the status and, when
    OK, the escalation's version after the command (it answers with the escalation as
    its read view shows it at that version)."""

    status: CommandStatus
    message: str = ""
    escalation_id: str = ""
    version: int = 0


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """What the owner decided: the escalation after the command and the changes to
    publish with the answer."""

    status: CommandStatus
    message: str = ""
    escalation: Escalation | None = None
    changes: tuple[EscalationChange, ...] = ()

    def answer(self) -> CommandAnswer:
        e = self.escalation
        if e is None:
            return CommandAnswer(self.status, self.message)
        return CommandAnswer(self.status, self.message, e.escalation_id, e.version)


def not_found(escalation_id: str) -> CommandOutcome:
    return CommandOutcome(CommandStatus.NOT_FOUND, f"escalation {escalation_id!r} not found")


_STATUS: dict[type[CommandError], CommandStatus] = {
    InvalidTransition: CommandStatus.FAILED_PRECONDITION,
    InvalidArgument: CommandStatus.INVALID_ARGUMENT,
}


def run_command(
    core: EscalationCore | None,
    command: ManagerCommand,
    requester: Requester,
    now: float,
    expires_at: float,
) -> CommandOutcome:
    """Apply ``command`` to the domain's ``core`` (None: the owner holds nothing of the
    domain) on behalf of ``requester``, wholly or not at all."""
    if MANAGER not in requester.roles:
        return CommandOutcome(
            CommandStatus.PERMISSION_DENIED, "escalations are for the 'manager' role"
        )
    if now > expires_at:
        return CommandOutcome(
            CommandStatus.EXPIRED,
            f"read {now - expires_at:.1f} s after its deadline; not applied",
        )
    esc_id = command.escalation_id
    found = core.get(esc_id) if core is not None else None
    if core is None or found is None or not requester.sees(found):
        return not_found(esc_id)
    who = requester.subject
    try:
        result: CommandResult
        if isinstance(command, Acknowledge):
            result = core.acknowledge(esc_id, who, now)
        elif isinstance(command, AddNote):
            result = core.add_note(esc_id, who, command.text, now)
        else:
            result = core.resolve(esc_id, who, command.resolution_code, now, command.note)
    except PermissionDenied:  # another team's: as if it did not exist
        return not_found(esc_id)
    except CommandError as exc:
        return CommandOutcome(_STATUS.get(type(exc), CommandStatus.NOT_FOUND), exc.reason)
    return CommandOutcome(CommandStatus.OK, "", result.escalation, result.changes)
