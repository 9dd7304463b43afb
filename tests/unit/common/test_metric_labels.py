"""Label values typed by people stay bounded."""

from __future__ import annotations

from services.common.metrics import BoundedLabel


def test_the_first_values_are_kept_and_later_ones_are_other() -> None:
    label = BoundedLabel(limit=3)
    assert [label(v) for v in ("refund", "callback", "refund", "fixed")] == [
        "refund",
        "callback",
        "refund",
        "fixed",
    ]
    assert label("a typo nobody will ever see again") == "other"
    assert label("refund") == "refund"


def test_an_overlong_value_is_other() -> None:
    assert BoundedLabel()("x" * 65) == "other"
