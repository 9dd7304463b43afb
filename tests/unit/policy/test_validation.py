"""Policy documents are checked with the services' own parsers; every problem names its field."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.policy.validation import InvalidPolicy, document_problems, parse_document

ROOT = Path(__file__).resolve().parents[3]

QUEUE = """
[routing.queues.billing-en]
skills = { billing = 3 }
language = "en"
"""


@pytest.mark.parametrize("name", ["acme", "wroclaw"])
def test_the_demo_tenants_documents_are_valid(name: str) -> None:
    parsed = parse_document((ROOT / "deploy" / "policies" / f"{name}.toml").read_text())
    assert parsed.routing is not None
    assert parsed.escalation is not None
    assert parsed.notification is not None


def test_a_table_left_out_is_none_the_configured_default() -> None:
    parsed = parse_document(QUEUE)
    assert parsed.routing is not None
    assert list(parsed.routing.queues) == ["billing-en"]
    assert parsed.escalation is None
    assert parsed.notification is None


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (
            QUEUE + "service_level_s = 0\n",
            "routing.queues.billing-en.service_level_s: must be > 0",
        ),
        (
            QUEUE + 'strategy = "fastest"\n',
            "routing.queues.billing-en.strategy: unknown strategy",
        ),
        (
            QUEUE + 'steps = [{ after_s = 30, overflow_queues = ["nowhere"] }]\n',
            "routing.queues.billing-en.steps.0.overflow_queues: unknown queue 'nowhere'",
        ),
        ("[routing]\ncapacity = 5\n" + QUEUE, "routing.capacity: must be a table"),
        (
            '[routing]\nfallback_queue = "nowhere"\n' + QUEUE,
            "routing.fallback_queue: unknown queue 'nowhere'",
        ),
        (
            '[escalation]\nmanager = "m"\n[escalation.teams.t]\n[escalation.queues.q]\nteam = "t"\n',
            "escalation.teams.t.supervisor: missing",
        ),
        (
            '[escalation]\nmanager = "m"\nhead_of_service = "h"\n[escalation.teams.t]\n'
            'supervisor = "s"\n[escalation.queues.q]\nteam = "t"\ncalendar = "office"\n',
            "escalation.queues.q.calendar: unknown calendar 'office'",
        ),
        (
            "[notification]\nposition_min_interval_s = -1\n",
            "notification.position_min_interval_s: must be > 0",
        ),
        ("[notification]\nloudness = 3\n", "notification.loudness: unknown field"),
        ("[routing\n", "document: not TOML"),
        ("[marketing]\nx = 1\n", "marketing: unknown table"),
        ("x = 1\n", "x: unknown table"),
    ],
)
def test_each_problem_names_its_field(document: str, problem: str) -> None:
    problems = document_problems(document)
    assert len(problems) == 1, problems
    assert problems[0].startswith(problem), problems


def test_every_table_is_checked_one_problem_each() -> None:
    document = (
        QUEUE
        + "offer_timeout_s = 0\n"
        + "[notification]\nrate_limit_count = 0\n"
        + "[escalation]\nteams = 3\n"
    )
    with pytest.raises(InvalidPolicy) as refused:
        parse_document(document)
    assert [p.split(":")[0] for p in refused.value.problems] == [
        "routing.queues.billing-en.offer_timeout_s",
        "escalation.teams",
        "notification.rate_limit_count",
    ]


def test_a_document_over_64_kib_is_refused_before_parsing() -> None:
    document = QUEUE + "#" * (64 * 1024)
    assert document_problems(document) == [f"document: {len(document)} bytes exceeds {64 * 1024}"]
