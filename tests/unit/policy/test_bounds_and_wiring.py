"""The PolicyService's request bounds (the identity interceptor's), the router's room for
policy documents, the demo tenants' people, and the what-if reading a policy document."""

from __future__ import annotations

from pathlib import Path

import pytest
from switchboard.v1 import contact_events_pb2, policy_pb2

from services.common.contract import within_bounds
from services.common.errors import ConfigError, RejectedEvent
from services.launcher.demo_credentials import demo_people, tenant_staffing
from services.launcher.policies import demo_policies, expected_version
from services.router.settings import RouterSettings
from services.router.whatif import UsageError, load_policy

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("request_", "refusal"),
    [
        (policy_pb2.ApplyPolicyRequest(comment="c" * 501), "comment: 501 characters, at most 500"),
        (
            policy_pb2.RollbackPolicyRequest(comment="c" * 501),
            "comment: 501 characters, at most 500",
        ),
        (
            policy_pb2.ApplyPolicyRequest(document="d" * (64 * 1024 + 1)),
            "document: 65537 characters, at most 65536",
        ),
        (
            policy_pb2.ValidatePolicyRequest(document="d" * (64 * 1024 + 1)),
            "document: 65537 characters, at most 65536",
        ),
        (policy_pb2.GetPolicyHistoryRequest(domain="x" * 129), "domain: 129 characters"),
    ],
)
def test_policy_requests_are_bounded_field_by_field(request_: object, refusal: str) -> None:
    with pytest.raises(RejectedEvent, match=refusal):
        within_bounds(request_)  # type: ignore[arg-type]


def test_the_largest_policy_request_is_within_bounds_and_other_comments_keep_theirs() -> None:
    within_bounds(
        policy_pb2.ApplyPolicyRequest(
            domain="x" * 128, document="d" * 64 * 1024, comment="c" * 500, expected_version=3
        )
    )
    # a contact event's comment keeps its own, larger bound
    within_bounds(contact_events_pb2.SurveyResult(comment="c" * 1000))


def test_the_router_takes_requests_large_enough_for_a_policy_document() -> None:
    config = ROOT / "deploy" / "config" / "router.toml"  # has a [grpc] table without it
    assert RouterSettings.from_env({}, config_file=config).grpc.max_request_bytes == 96 * 1024
    with pytest.raises(ConfigError, match=r"grpc\.max_request_bytes: at least"):
        RouterSettings.from_env({"SWITCHBOARD_GRPC__MAX_REQUEST_BYTES": "65536"}, config)


def test_each_tenant_gets_its_managers_and_an_operator_of_its_own() -> None:
    tenants = tenant_staffing(demo_policies())
    assert set(tenants) == {"acme", "wroclaw"}
    assert tenants["wroclaw"]["agnieszka"] == {"wroclaw-faktury", "wroclaw-sprzedaz"}
    people = {p.subject: p for p in demo_people({"hugo": ["*"]}, tenants)}
    assert people["agnieszka"].domains == ("wroclaw",)
    assert people["hugo"].domains == ("*",)  # in escalation.toml too: every domain
    assert people["ops"].domains == ("*",)  # applies every tenant's policy
    assert people["ops"].roles == ("operator",)
    assert people["ops-wroclaw"].domains == ("wroclaw",)
    assert people["ops-acme"].domains == ("acme",)


def test_the_launcher_skips_a_domain_whose_current_version_has_the_document() -> None:
    assert expected_version([], "doc") == 0
    current = [policy_pb2.PolicyVersion(version=4, document="doc")]
    assert expected_version(current, "doc") is None
    assert expected_version(current, "other") == 4


def test_the_whatif_reads_a_policy_documents_routing_table(tmp_path: Path) -> None:
    policy = load_policy(ROOT / "deploy" / "policies" / "wroclaw.toml")
    assert set(policy.queues) == {"faktury", "serwis", "sprzedaz"}
    assert "billing-en" in load_policy(ROOT / "deploy" / "config" / "router.toml").queues
    no_routing = tmp_path / "notify.toml"
    no_routing.write_text("[notification]\nposition_min_interval_s = 45\n")
    with pytest.raises(UsageError, match="without \\[routing\\]"):
        load_policy(no_routing)
    bad = tmp_path / "bad.toml"
    bad.write_text("[routing.queues.q]\nskills = { x = 11 }\n[escalation]\n")
    with pytest.raises(UsageError, match=r"routing\.queues\.q\.skills\.x: proficiency is 1-10"):
        load_policy(bad)
