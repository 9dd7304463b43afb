"""Agent and contact statuses and the transitions allowed between them, as tables.

Like h11's state machine: every status change the core makes goes through
:func:`agent_moves` or :func:`contact_moves`, which look it up here. A change that is
not in its table is a bug in the core, not bad input, so it raises
:class:`~services.router.domain.errors.ForbiddenTransition` (not a ``RoutingError``:
the event is not dead-lettered as if it were the sender's fault).

Agents store one of four states; BUSY and RESERVED are never stored, they are what an
AVAILABLE agent with contacts in hand or an offer ringing looks like from outside
(``AgentRecord.effective_state``). Contacts store one of four statuses; a closed
contact is deleted, so "closed" is not a status. PARKED is where a waiting contact goes
when a policy change removes its queue and names no fallback queue: in no line, reported
unroutable, until it is transferred, its queue comes back, a fallback is named, or it ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final

from services.router.domain.errors import ForbiddenTransition
from services.router.domain.model import AgentState

__all__ = [
    "AGENT_TRANSITIONS",
    "ASSIGNED",
    "CONTACT_TRANSITIONS",
    "OFFERED",
    "PARKED",
    "WAITING",
    "ContactStatus",
    "agent_moves",
    "contact_moves",
]


class ContactStatus(StrEnum):
    """Where a contact stands. The values are the strings stored in snapshots."""

    WAITING = "waiting"
    OFFERED = "offered"
    ASSIGNED = "assigned"
    PARKED = "parked"


# Module-level names: a class attribute lookup on an enum costs more on the hot path.
WAITING: Final = ContactStatus.WAITING
OFFERED: Final = ContactStatus.OFFERED
ASSIGNED: Final = ContactStatus.ASSIGNED
PARKED: Final = ContactStatus.PARKED

_A = AgentState

#: status -> statuses it may change to (the event that causes each, as a comment).
CONTACT_TRANSITIONS: Final[Mapping[ContactStatus, frozenset[ContactStatus]]] = {
    WAITING: frozenset(
        {
            OFFERED,  # an agent is chosen (on arrival, or when an agent frees up)
            WAITING,  # transferred while waiting: back in line in the target queue
            PARKED,  # a policy change removed its queue and named no fallback queue
        }
    ),
    OFFERED: frozenset(
        {
            ASSIGNED,  # the agent accepts
            WAITING,  # rejected, timed out, withdrawn (agent away / logged out), transferred
        }
    ),
    ASSIGNED: frozenset(
        {
            WAITING,  # transferred
        }
    ),
    PARKED: frozenset(
        {
            WAITING,  # transferred, or a policy brought its queue back or named a fallback
        }
    ),
}

#: stored state -> states it may change to.
AGENT_TRANSITIONS: Final[Mapping[AgentState, frozenset[AgentState]]] = {
    _A.AVAILABLE: frozenset(
        {
            _A.AWAY,  # set away, or missed an offer
            _A.WRAP_UP,  # a contact ended and the queue has wrap-up time
            _A.LOGGED_OUT,
        }
    ),
    _A.WRAP_UP: frozenset(
        {
            _A.AVAILABLE,  # wrap-up time over, or set available early
            _A.AWAY,  # set away, or missed an offer still ringing from before
            _A.LOGGED_OUT,
        }
    ),
    _A.AWAY: frozenset(
        {
            _A.AVAILABLE,
            _A.AWAY,  # a new reason
            _A.LOGGED_OUT,
        }
    ),
    _A.LOGGED_OUT: frozenset(
        {
            _A.AVAILABLE,  # logged in again (with contacts still in hand)
        }
    ),
}


def contact_moves(current: ContactStatus, new: ContactStatus) -> ContactStatus:
    """``new``, if :data:`CONTACT_TRANSITIONS` allows it from ``current``."""
    if new not in CONTACT_TRANSITIONS[current]:
        raise ForbiddenTransition(f"contact {current} -> {new} is not in the table")
    return new


def agent_moves(current: AgentState, new: AgentState) -> AgentState:
    """``new``, if :data:`AGENT_TRANSITIONS` allows it from ``current``."""
    if new not in AGENT_TRANSITIONS[current]:
        raise ForbiddenTransition(f"agent {current.name} -> {new.name} is not in the table")
    return new
