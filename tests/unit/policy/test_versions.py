"""Versions: the next is current + 1, only from the expected version; rollbacks; a capped
history; the read view takes only newer versions, within its bounds."""

from __future__ import annotations

import pytest

from services.policy.versions import (
    MAX_EARLIER,
    MAX_HISTORY_BYTES,
    BookIncomplete,
    History,
    PolicyBook,
    UnknownVersion,
    Version,
    VersionConflict,
    apply_version,
    rollback_version,
)


def apply(history: History | None, document: str, expected: int, **extra: object) -> History:
    return apply_version(
        history,
        domain="acme",
        expected_version=expected,
        document=document,
        author=str(extra.get("author", "ops")),
        comment=str(extra.get("comment", f"set {document}")),
        now=float(extra.get("now", 100.0)),  # type: ignore[arg-type]
    )


def test_the_first_version_is_1_based_on_none() -> None:
    history = apply(None, "a", expected=0, author="ops", now=5.0)
    assert history.current == Version(1, "ops", 5.0, "set a", "a")
    assert history.earlier == ()


def test_each_version_keeps_the_previous_ones_newest_first() -> None:
    history = apply(None, "a", 0)
    history = apply(history, "b", 1)
    history = apply(history, "c", 2)
    assert [v.version for v in history.versions()] == [3, 2, 1]
    assert [v.document for v in history.versions()] == ["c", "b", "a"]


@pytest.mark.parametrize("expected", [0, 1, 3])
def test_a_change_based_on_another_version_is_a_conflict(expected: int) -> None:
    history = apply(apply(None, "a", 0, author="mira"), "b", 1, author="mira")
    with pytest.raises(
        VersionConflict,
        match=f"expected_version {expected}, but domain 'acme' is at version 2 \\(applied by mira\\)",
    ):
        apply(history, "c", expected)


def test_a_first_version_expects_0() -> None:
    with pytest.raises(VersionConflict, match="is at version 0"):
        apply(None, "a", expected=1)


def test_the_history_keeps_at_most_20_earlier_versions() -> None:
    history = None
    for n in range(30):
        history = apply(history, f"doc {n}", n)
    assert history is not None
    assert history.current.version == 30
    assert len(history.earlier) == MAX_EARLIER
    assert [v.version for v in history.earlier] == list(range(29, 9, -1))


def test_large_documents_keep_fewer_versions_so_a_record_fits() -> None:
    big = "x" * (64 * 1024 - 10)
    history = None
    for n in range(20):
        history = apply(history, big + str(n), n, comment="bigger")
    assert history is not None
    kept = history.versions()
    assert sum(v.size for v in kept) <= MAX_HISTORY_BYTES
    assert len(kept) == MAX_HISTORY_BYTES // len(big) < 20
    assert [v.version for v in kept] == list(range(20, 20 - len(kept), -1))  # oldest dropped


def test_a_rollback_is_a_new_version_with_the_earlier_document() -> None:
    history = apply(apply(apply(None, "a", 0), "b", 1), "c", 2)
    rolled = rollback_version(
        history,
        domain="acme",
        to_version=1,
        expected_version=3,
        author="olga",
        comment="back to a",
        now=9.0,
    )
    assert rolled.current == Version(4, "olga", 9.0, "back to a", "a", restores_version=1)
    assert [v.version for v in rolled.earlier] == [3, 2, 1]


@pytest.mark.parametrize("to", [0, 5, 99])
def test_a_rollback_to_a_version_not_held_is_unknown(to: int) -> None:
    history = apply(apply(None, "a", 0), "b", 1)
    with pytest.raises(
        UnknownVersion, match=f"domain 'acme' has no version {to}: it holds versions 1, 2"
    ):
        rollback_version(
            history,
            domain="acme",
            to_version=to,
            expected_version=2,
            author="o",
            comment="c",
            now=1,
        )


def test_a_rollback_of_a_domain_without_versions_is_unknown() -> None:
    with pytest.raises(UnknownVersion, match="configured default"):
        rollback_version(
            None, domain="acme", to_version=1, expected_version=0, author="o", comment="c", now=1
        )


def test_a_rollback_checks_the_expected_version_and_refuses_the_current_one() -> None:
    history = apply(apply(None, "a", 0), "b", 1)
    with pytest.raises(VersionConflict, match="is at version 2"):
        rollback_version(
            history, domain="acme", to_version=1, expected_version=1, author="o", comment="c", now=1
        )
    with pytest.raises(VersionConflict, match="already"):
        rollback_version(
            history, domain="acme", to_version=2, expected_version=2, author="o", comment="c", now=1
        )


def test_the_book_takes_only_newer_versions_as_the_services_do() -> None:
    book = PolicyBook()
    one = apply(None, "a", 0)
    two = apply(one, "b", 1)
    assert book.get("acme") is None
    assert book.put("acme", two, 100) == "applied"
    assert book.put("acme", two, 100) == "same"
    assert book.put("acme", one, 50) == "stale"
    rival = apply(one, "rival", 1, author="other")  # another version 2
    assert book.put("acme", rival, 100) == "stale"
    assert book.get("acme") == two
    assert (book.stale, book.size, len(book)) == (2, 100, 1)


def test_the_book_is_bounded_and_then_cannot_answer_for_unknown_domains() -> None:
    book = PolicyBook(max_domains=2, max_bytes=10_000)
    history = apply(None, "a", 0)
    assert book.put("a", history, 10) == "applied"
    assert book.put("b", history, 10) == "applied"
    assert book.put("c", history, 10) == "left out"
    assert book.put("a", apply(history, "x", 1), 20_000) == "left out"
    assert book.get("a") == history  # held domains still answer
    with pytest.raises(BookIncomplete, match=r"policy_service\.max_domains"):
        book.get("c")
    with pytest.raises(BookIncomplete):
        book.get("never-seen")
