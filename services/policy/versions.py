"""A domain's policy versions and the rules for making the next one. Pure.

A domain's record on ``policies`` is its whole :class:`History`: the current version and
the earlier ones, newest first. The next version is always ``current + 1`` and is made
only if the caller based their change on the current version (``expected_version``,
0 for a domain with none yet): otherwise someone applied meanwhile and the caller must
look again (:class:`VersionConflict`). A rollback is a new version carrying an earlier
version's document, with ``restores_version`` saying which.

The history is capped: at most :data:`MAX_EARLIER` earlier versions, and fewer if their
documents would make the record larger than :data:`MAX_HISTORY_BYTES` (the oldest go
first), so a record always fits Kafka's 1 MB, whatever the documents' sizes.

:class:`PolicyBook` is the read view of every domain's current record: the same rule as
the services apply it by (a version not newer than the one held is stale and ignored),
bounded in domains and bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "MAX_EARLIER",
    "MAX_HISTORY_BYTES",
    "BookIncomplete",
    "History",
    "PolicyBook",
    "PolicyRefused",
    "UnknownVersion",
    "Version",
    "VersionConflict",
    "apply_version",
    "cap_earlier",
    "current_version",
    "rollback_version",
]

#: Earlier versions kept with the current one (``PolicyChanged.earlier``).
MAX_EARLIER = 20
#: Most bytes of documents and comments in one record (current and earlier): a record
#: stays under Kafka's and the services' 1 MB record limit with room for the rest.
MAX_HISTORY_BYTES = 800_000


@dataclass(frozen=True, slots=True)
class Version:
    """One version of a domain's policy (``policy.proto``'s PolicyVersion)."""

    version: int
    author: str
    applied_at: float
    comment: str
    document: str
    #: Set by a rollback: the version whose document this one applies again.
    restores_version: int = 0

    @property
    def size(self) -> int:
        return len(self.document.encode()) + len(self.comment.encode()) + len(self.author)


@dataclass(frozen=True, slots=True)
class History:
    """A domain's current version and the earlier ones, newest first."""

    current: Version
    earlier: tuple[Version, ...] = ()

    def versions(self) -> tuple[Version, ...]:
        """Every version held, newest first."""
        return (self.current, *self.earlier)

    def find(self, version: int) -> Version | None:
        return next((v for v in self.versions() if v.version == version), None)


class PolicyRefused(Exception):
    """A change that cannot be made; ``reason`` says why (safe to show the caller)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class VersionConflict(PolicyRefused):
    """The change was based on another version than the current one (or rolls back to
    the current one): FAILED_PRECONDITION."""


class UnknownVersion(PolicyRefused):
    """No such version in the domain's history: NOT_FOUND."""


class BookIncomplete(Exception):
    """The read view left domains out (past its bounds): it cannot say what a domain it
    does not hold has."""


def current_version(history: History | None) -> int:
    """The domain's current version number; 0: none (the configured default)."""
    return 0 if history is None else history.current.version


def cap_earlier(current: Version, earlier: tuple[Version, ...]) -> tuple[Version, ...]:
    """``earlier`` cut to :data:`MAX_EARLIER` and to :data:`MAX_HISTORY_BYTES` with
    ``current`` (oldest dropped first)."""
    kept = list(earlier[:MAX_EARLIER])
    total = current.size + sum(v.size for v in kept)
    while kept and total > MAX_HISTORY_BYTES:
        total -= kept.pop().size
    return tuple(kept)


def apply_version(
    history: History | None,
    *,
    domain: str,
    expected_version: int,
    document: str,
    author: str,
    comment: str,
    now: float,
    restores_version: int = 0,
) -> History:
    """The domain's history with a new current version, or :class:`VersionConflict`."""
    current = current_version(history)
    if expected_version != current:
        raise VersionConflict(
            f"expected_version {expected_version}, but domain {domain!r} is at version "
            f"{current}"
            + (f" (applied by {history.current.author})" if history else "")
            + ": someone applied meanwhile; look at its history and apply again"
        )
    new = Version(current + 1, author, now, comment, document, restores_version)
    if history is None:
        return History(new)
    return History(new, cap_earlier(new, history.versions()))


def rollback_version(
    history: History | None,
    *,
    domain: str,
    to_version: int,
    expected_version: int,
    author: str,
    comment: str,
    now: float,
) -> History:
    """A new version with ``to_version``'s document; :class:`UnknownVersion` if the
    history does not hold it (never applied, or older than what is kept)."""
    target = None if history is None else history.find(to_version)
    if history is None or target is None:
        kept = (
            "it has no versions (it runs on the configured default)"
            if history is None
            else "it holds versions "
            + ", ".join(str(v.version) for v in reversed(history.versions()))
        )
        raise UnknownVersion(f"domain {domain!r} has no version {to_version}: {kept}")
    if to_version == history.current.version:
        raise VersionConflict(f"version {to_version} is already domain {domain!r}'s current one")
    return apply_version(
        history,
        domain=domain,
        expected_version=expected_version,
        document=target.document,
        author=author,
        comment=comment,
        now=now,
        restores_version=to_version,
    )


@dataclass
class PolicyBook:
    """Every domain's current record, from the ``policies`` topic, bounded."""

    max_domains: int = 100_000
    max_bytes: int = 256 * 1024 * 1024
    _histories: dict[str, tuple[History, int]] = field(default_factory=dict)
    size: int = 0
    #: Records left out: past the bounds (the view is then incomplete), or stale.
    left_out: int = 0
    stale: int = 0

    def __len__(self) -> int:
        return len(self._histories)

    @property
    def complete(self) -> bool:
        return self.left_out == 0

    def put(self, domain: str, history: History, size: int) -> str:
        """Take a record; what became of it: ``"applied"``, ``"same"`` (already held),
        ``"stale"`` (not newer than the version held, as the services refuse it) or
        ``"left out"`` (past the bounds)."""
        held = self._histories.get(domain)
        if held is not None:
            if held[0].current == history.current:
                return "same"
            if history.current.version <= held[0].current.version:
                self.stale += 1
                return "stale"
        grown = self.size - (held[1] if held else 0) + size
        if (held is None and len(self._histories) >= self.max_domains) or grown > self.max_bytes:
            self.left_out += 1
            return "left out"
        self._histories[domain] = (history, size)
        self.size = grown
        return "applied"

    def get(self, domain: str) -> History | None:
        """The domain's history; None: it has none. :class:`BookIncomplete` if it is not
        held and the book left some domain out (it may be that one)."""
        held = self._histories.get(domain)
        if held is not None:
            return held[0]
        if not self.complete:
            raise BookIncomplete(
                f"the read view of policies left {self.left_out} record(s) out past its bounds "
                "(policy_service.max_domains, policy_service.max_bytes): raise them, restart"
            )
        return None
