"""Reading a policy document: tables present, bounds, and errors that name the field."""

from __future__ import annotations

import pytest

from services.common.policy_document import (
    MAX_DOCUMENT_BYTES,
    PolicyDocumentError,
    policy_tables,
)


def test_a_document_gives_the_tables_it_has() -> None:
    tables = policy_tables("[routing]\nmax_total = 3\n[notification]\nquiet = true\n")
    assert tables == {"routing": {"max_total": 3}, "notification": {"quiet": True}}


@pytest.mark.parametrize(
    ("document", "named"),
    [
        ("[routing\n", "document: not TOML"),
        ("[billing]\nx = 1\n", "billing: unknown table"),
        ("routing = 3\n", "routing: must be a table"),
        ("", "document: no [routing]"),
        ("[routing]\n# " + "x" * MAX_DOCUMENT_BYTES, "document: "),
    ],
)
def test_what_is_wrong_is_named(document: str, named: str) -> None:
    with pytest.raises(PolicyDocumentError) as caught:
        policy_tables(document)
    assert caught.value.reason.startswith(named)
    assert "\n" not in caught.value.reason
