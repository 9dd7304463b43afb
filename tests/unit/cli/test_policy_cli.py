"""``switchboard policy``: options, offline validate and diff, the history table."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from switchboard.v1 import policy_pb2

from services.cli.__main__ import build_parser, main
from services.cli.policy import configured_default, history_lines, read_document
from services.common.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]
ACME = ROOT / "deploy" / "policies" / "acme.toml"


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as ended:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(ended.value.code or 0), out, err


def test_apply_takes_domain_file_comment_and_an_optional_expected_version() -> None:
    args = parse("policy", "apply", "--domain", "acme", "p.toml", "--comment", "why")
    assert (args.domain, args.file, args.comment, args.expected_version) == (
        "acme",
        Path("p.toml"),
        "why",
        None,
    )
    assert (
        parse(
            "policy",
            "apply",
            "--domain",
            "a",
            "p.toml",
            "--comment",
            "c",
            "--expected-version",
            "3",
        ).expected_version
        == 3
    )
    assert args.target == "127.0.0.1:50051"  # the router hosts PolicyService


@pytest.mark.parametrize(
    "argv",
    [
        ("policy", "apply", "p.toml", "--comment", "c"),  # no --domain
        ("policy", "apply", "--domain", "a", "p.toml"),  # no --comment
        ("policy", "rollback", "--domain", "a", "--comment", "c"),  # no --to
        ("policy", "rollback", "--domain", "a", "--to", "x", "--comment", "c"),
        ("policy", "apply", "--domain", "a", "p", "--comment", "c", "--expected-version", "-1"),
        ("policy", "history"),  # no --domain
        ("policy", "validate"),  # no file
    ],
)
def test_missing_or_bad_options_are_usage_errors(argv: tuple[str, ...]) -> None:
    with pytest.raises(SystemExit) as ended:
        parse(*argv)
    assert ended.value.code == 2


def test_validate_offline_says_valid_or_names_each_problem(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run(capsys, "policy", "validate", str(ACME))
    assert code == 0
    assert out == f"{ACME}: valid (checked here, with the services' parsers)\n"
    bad = tmp_path / "bad.toml"
    bad.write_text(
        ACME.read_text().replace("service_level_s = 30", "service_level_s = -3", 1)
        + "\n[notification.extra]\n"
    )
    code, out, _ = run(capsys, "policy", "validate", str(bad))
    assert code == 1
    assert out.splitlines() == [
        f"{bad}: invalid (checked here, with the services' parsers)",
        "  routing.queues.tech-en.service_level_s: must be > 0",
        "  notification.extra: unknown field",
    ]


def test_diff_against_a_file_works_offline(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    new = tmp_path / "new.toml"
    new.write_text(ACME.read_text().replace("offer_timeout_s = 8", "offer_timeout_s = 10", 1))
    code, out, _ = run(capsys, "policy", "diff", "--against", str(ACME), str(new))
    assert code == 0
    assert out.splitlines() == [
        f"{ACME} -> {new}",
        "routing:",
        "  billing-en: offer timeout 8s -> 10s",
    ]


def test_diff_without_domain_or_against_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(capsys, "policy", "diff", str(ACME))
    assert code == 2
    assert "--domain: required" in err


def test_apply_refuses_an_empty_comment_before_connecting(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(capsys, "policy", "apply", "--domain", "acme", str(ACME), "--comment", "  ")
    assert code == 2
    assert "--comment: required" in err


def test_a_document_is_read_bounded(tmp_path: Path) -> None:
    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * (64 * 1024 + 1))
    with pytest.raises(ConfigError, match="larger than 65536 bytes"):
        read_document(big)
    (tmp_path / "latin1.toml").write_bytes(b"# \xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_document(tmp_path / "latin1.toml")
    with pytest.raises(ConfigError, match="cannot read"):
        read_document(tmp_path / "absent.toml")


def test_the_configured_default_is_the_services_configuration_tables() -> None:
    default = configured_default(ROOT / "deploy" / "config")
    assert default.routing is not None
    assert "billing-en" in default.routing.queues
    assert default.escalation is not None
    assert default.notification is not None
    assert configured_default(ROOT / "nowhere").routing is None


def test_history_lines() -> None:
    versions = [
        policy_pb2.PolicyVersion(version=3, author="olga", comment="back to 1", restores_version=1),
        policy_pb2.PolicyVersion(version=2, author="ops", comment="tech-pl opened"),
    ]
    versions[0].applied_at.seconds = 1_764_100_000
    versions[1].applied_at.seconds = 1_764_000_000
    assert history_lines("acme", versions) == [
        "domain acme: 2 version(s) kept, newest first",
        "VERSION  APPLIED (UTC)         AUTHOR  COMMENT",
        "      3  2025-11-25 19:46:40Z  olga  (restores 1)  back to 1",
        "      2  2025-11-24 16:00:00Z  ops  tech-pl opened",
    ]
    assert history_lines("acme", []) == [
        "domain acme has no policy versions: it runs on the configured default"
    ]
