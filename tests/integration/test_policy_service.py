"""PolicyService in real router processes on the real broker: apply (a PolicyChanged on
`policies`, keyed and partitioned by the domain, with the caller's verified identity as
its author), a stale expected_version and an invalid document refused with nothing
written, history, rollback; who may do it; two replicas applying to one domain at once
write one version; and `switchboard policy` run as an operator runs it."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import pytest
from aiokafka.partitioner import murmur2
from aiokafka.structs import ConsumerRecord
from switchboard.v1 import (
    common_pb2,
    policy_pb2,
    policy_pb2_grpc,
    router_admin_pb2,
    router_admin_pb2_grpc,
)

from services.common.codec import decode_envelope, encode_envelope, new_envelope
from services.common.topics import Topics
from services.launcher.demo_credentials import AUDIENCES
from services.launcher.errors import LaunchError
from services.launcher.policies import apply_demo_policies, demo_policies
from tests.scenario import arrive, offers
from tests.support import (
    ISSUER,
    KafkaBroker,
    ServiceProcess,
    bearer,
    channel_as,
    service_env,
    service_process,
    wait_for,
)

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
ACME = (ROOT / "deploy" / "policies" / "acme.toml").read_text()
WROCLAW = (ROOT / "deploy" / "policies" / "wroclaw.toml").read_text()
OPS = bearer("ops", "router", "operator", domains=["acme"])


@dataclass
class Router:
    topics: Topics
    process: ServiceProcess

    @property
    def port(self) -> int:
        assert self.process.grpc_port is not None
        return self.process.grpc_port


async def start_router(kafka: KafkaBroker, topics: Topics, logs: Path, label: str) -> Router:
    env = service_env("router", kafka, topics, INSTANCE=f"{topics.prefix}{label}")
    process = service_process("router", env, logs, label=label)
    await process.start()
    return Router(topics, process)


@pytest.fixture
async def router(kafka: KafkaBroker, tmp_path: Path) -> AsyncIterator[Router]:
    started = await start_router(kafka, await kafka.fresh_topics(), tmp_path, "router")
    try:
        yield started
    finally:
        await started.process.stop()


#: The tests' channels, kept open (a stub alone does not keep its channel from closing).
CHANNELS: list[grpc.aio.Channel] = []


def stub(
    port: int, metadata: tuple[tuple[str, str], ...] = OPS
) -> policy_pb2_grpc.PolicyServiceAsyncStub:
    CHANNELS.append(channel_as(port, metadata))
    return policy_pb2_grpc.PolicyServiceStub(CHANNELS[-1])


async def records(
    kafka: KafkaBroker, topics: Topics, expect: int
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every committed record of `policies` (reading past ``expect`` for a moment, so a
    record too many would be seen)."""
    return await kafka.read_all(topics.name("policies"), expect=expect + 1, timeout=3.0)


def changed(record: ConsumerRecord[bytes, bytes]) -> policy_pb2.PolicyChanged:
    envelope = decode_envelope(record.value, tuple(record.headers or ()))
    assert envelope.WhichOneof("payload") == "policy_changed"
    assert envelope.domain == (record.key or b"").decode()
    return envelope.policy_changed


async def refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


async def test_apply_history_rollback_and_what_is_refused(
    kafka: KafkaBroker, router: Router
) -> None:
    policies = stub(router.port)
    assert not (
        await policies.GetPolicyHistory(policy_pb2.GetPolicyHistoryRequest(domain="acme"))
    ).versions

    reply = await policies.ApplyPolicy(
        policy_pb2.ApplyPolicyRequest(
            domain="acme", document=ACME, comment="the three languages", expected_version=0
        )
    )
    assert (reply.applied.version, reply.applied.author) == (1, "ops")  # the token's subject
    assert reply.applied.applied_at.seconds > 0
    [record] = await records(kafka, router.topics, 1)
    assert record.key == b"acme"
    assert record.partition == (murmur2(b"acme") & 0x7FFFFFFF) % 4  # as acme's contact events
    one = changed(record)
    assert (one.current.version, one.current.author, one.current.document) == (1, "ops", ACME)
    assert one.current.comment == "the three languages"
    assert not one.earlier

    # based on a version that is no longer current: refused, nothing written
    stale = await refused(
        policies.ApplyPolicy(
            policy_pb2.ApplyPolicyRequest(
                domain="acme", document=WROCLAW, comment="c", expected_version=0
            )
        )
    )
    assert stale.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "expected_version 0, but domain 'acme' is at version 1" in (stale.details() or "")
    # invalid: refused naming the field, nothing written
    invalid = await refused(
        policies.ApplyPolicy(
            policy_pb2.ApplyPolicyRequest(
                domain="acme",
                document=ACME.replace("offer_timeout_s = 8", "offer_timeout_s = 0", 1),
                comment="c",
                expected_version=1,
            )
        )
    )
    assert invalid.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert invalid.details() == "routing.queues.billing-en.offer_timeout_s: must be > 0"
    no_comment = await refused(
        policies.ApplyPolicy(
            policy_pb2.ApplyPolicyRequest(domain="acme", document=ACME, expected_version=1)
        )
    )
    assert no_comment.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (no_comment.details() or "").startswith("comment: required")

    two = await policies.ApplyPolicy(
        policy_pb2.ApplyPolicyRequest(
            domain="acme", document=WROCLAW, comment="Polish only", expected_version=1
        )
    )
    assert two.applied.version == 2
    assert len(await records(kafka, router.topics, 2)) == 2  # nothing in between

    history = await policies.GetPolicyHistory(policy_pb2.GetPolicyHistoryRequest(domain="acme"))
    assert [(v.version, v.comment) for v in history.versions] == [
        (2, "Polish only"),
        (1, "the three languages"),
    ]

    back = await policies.RollbackPolicy(
        policy_pb2.RollbackPolicyRequest(
            domain="acme", to_version=1, comment="too soon", expected_version=2
        )
    )
    assert (back.applied.version, back.applied.restores_version) == (3, 1)
    assert back.applied.document == ACME
    last = changed((await records(kafka, router.topics, 3))[-1])
    assert (last.current.version, last.current.restores_version) == (3, 1)
    assert [v.version for v in last.earlier] == [2, 1]

    unknown = await refused(
        policies.RollbackPolicy(
            policy_pb2.RollbackPolicyRequest(
                domain="acme", to_version=9, comment="c", expected_version=3
            )
        )
    )
    assert unknown.code() == grpc.StatusCode.NOT_FOUND
    assert "no version 9" in (unknown.details() or "")

    checked = await policies.ValidatePolicy(
        policy_pb2.ValidatePolicyRequest(document="[notification]\nloudness = 3\n")
    )
    assert list(checked.problems) == ["notification.loudness: unknown field"]
    assert not (
        await policies.ValidatePolicy(policy_pb2.ValidatePolicyRequest(document=ACME))
    ).problems
    assert len(await records(kafka, router.topics, 3)) == 3


async def test_only_operators_of_the_domain_may(kafka: KafkaBroker, router: Router) -> None:
    apply = policy_pb2.ApplyPolicyRequest(domain="acme", document=ACME, comment="c")
    history = policy_pb2.GetPolicyHistoryRequest(domain="acme")
    cases = [
        ((), grpc.StatusCode.UNAUTHENTICATED),
        (
            bearer("globex-ops", "router", "operator", domains=["globex"]),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        (bearer("hugo", "router", "manager", teams=["*"]), grpc.StatusCode.PERMISSION_DENIED),
        (bearer("ops", "escalation", "operator"), grpc.StatusCode.UNAUTHENTICATED),  # audience
    ]
    for metadata, code in cases:
        policies = stub(router.port, metadata)
        assert (await refused(policies.ApplyPolicy(apply))).code() == code, metadata
        assert (await refused(policies.GetPolicyHistory(history))).code() == code, metadata
        rollback = policy_pb2.RollbackPolicyRequest(domain="acme", to_version=1, comment="c")
        assert (await refused(policies.RollbackPolicy(rollback))).code() == code, metadata
    other = await refused(
        stub(
            router.port, bearer("globex-ops", "router", "operator", domains=["globex"])
        ).ApplyPolicy(apply)
    )
    assert other.details() == "domain 'acme' is not in your token's domains"
    assert not await records(kafka, router.topics, 0)


async def test_two_replicas_applying_at_once_write_one_version(
    kafka: KafkaBroker, tmp_path: Path
) -> None:
    topics = await kafka.fresh_topics()
    first = await start_router(kafka, topics, tmp_path, "router-a")
    second = await start_router(kafka, topics, tmp_path, "router-b")
    try:
        stubs = [stub(first.port), stub(second.port)]
        attempts = [
            stubs[i % 2].ApplyPolicy(
                policy_pb2.ApplyPolicyRequest(
                    domain="acme", document=ACME, comment=f"attempt {i}", expected_version=0
                )
            )
            for i in range(6)
        ]
        outcomes = await asyncio.gather(*attempts, return_exceptions=True)
        won = [o for o in outcomes if isinstance(o, policy_pb2.ApplyPolicyResponse)]
        lost = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
        assert len(won) == 1, outcomes
        assert won[0].applied.version == 1
        assert {e.code() for e in lost} <= {
            grpc.StatusCode.FAILED_PRECONDITION,
            grpc.StatusCode.ABORTED,
        }, [(e.code(), e.details()) for e in lost]
        [record] = await records(kafka, topics, 1)
        assert changed(record).current.comment == won[0].applied.comment
        # either replica shows it at once (read-your-writes across replicas)
        for policies in stubs:
            seen = await policies.GetPolicyHistory(
                policy_pb2.GetPolicyHistoryRequest(domain="acme")
            )
            assert [v.comment for v in seen.versions] == [won[0].applied.comment]
    finally:
        await second.process.stop()
        await first.process.stop()


# ------------------------------------------------------------------------------ the CLI


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


async def switchboard(*args: str, env: dict[str, str]) -> Ran:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        *args,
        env=os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen")])} | env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


async def test_switchboard_policy_validate_diff_apply_history_rollback(
    kafka: KafkaBroker, router: Router, tmp_path: Path
) -> None:
    token = tmp_path / "ops.jwt"
    token.write_text(
        ISSUER.mint("ops", audience=AUDIENCES["router"], roles=["operator"], domains=["acme"])
    )
    env = {"SWITCHBOARD_TOKEN_FILE": str(token)}
    target = ("--target", f"127.0.0.1:{router.port}")
    acme = str(ROOT / "deploy" / "policies" / "acme.toml")
    changed_file = tmp_path / "acme-tech-pl.toml"
    changed_file.write_text(
        ACME + '\n[routing.queues.tech-pl]\nskills = { tech = 4 }\nlanguage = "pl"\n'
        '\n[escalation.queues.tech-pl]\nteam = "polish"\n'
    )

    ran = await switchboard("policy", "validate", "--server", *target, acme, env=env)
    assert (ran.code, ran.out) == (0, f"{acme}: valid (checked by 127.0.0.1:{router.port})\n")
    bad = tmp_path / "bad.toml"
    bad.write_text("[routing.queues.q]\nskills = { tech = 11 }\n")
    ran = await switchboard("policy", "validate", "--server", *target, str(bad), env=env)
    assert ran.code == 1
    assert "  routing.queues.q.skills.tech: proficiency is 1-10" in ran.out.splitlines()

    ran = await switchboard("policy", "diff", "--domain", "acme", *target, acme, env=env)
    assert ran.code == 0, ran.err
    assert ran.out.splitlines()[0].startswith(
        "domain acme has no policy version: comparing the configured default"
    )
    assert ran.out.splitlines()[1:] == [  # acme.toml is today's configuration
        line
        for table in ("routing", "escalation", "notification")
        for line in (
            f"{table}:",
            f"  [{table}] given, the same as the configured default (it no longer follows a "
            "change of the default)",
        )
    ]

    ran = await switchboard(
        "policy", "apply", "--domain", "acme", *target, acme, "--comment", "as configured", env=env
    )
    assert ran.code == 0, ran.err
    assert ran.out.startswith("applied to domain acme (was version 0):\n      1  ")
    assert "  ops  as configured" in ran.out

    ran = await switchboard(
        "policy", "diff", "--domain", "acme", *target, str(changed_file), env=env
    )
    assert ran.code == 0, ran.err
    assert ran.out.splitlines() == [
        f"domain acme, version 1 -> {changed_file}",
        "routing:",
        "  queue added: tech-pl (needs tech >= 4, language pl, longest_idle, 80% within 20s, "
        "offer timeout 15s)",
        "escalation:",
        "  queue added: tech-pl (team polish, calendar always open)",
    ]

    ran = await switchboard(
        "policy",
        "apply",
        "--domain",
        "acme",
        *target,
        str(changed_file),
        "--comment",
        "tech-pl",
        "--expected-version",
        "0",
        env=env,
    )
    assert ran.code == 1
    assert ran.err.startswith(
        "error: FAILED_PRECONDITION: expected_version 0, but domain 'acme' is at version 1"
    )
    ran = await switchboard(
        "policy",
        "apply",
        "--domain",
        "acme",
        *target,
        str(changed_file),
        "--comment",
        "tech-pl",
        env=env,
    )
    assert ran.code == 0, ran.err

    ran = await switchboard("policy", "history", "--domain", "acme", *target, env=env)
    assert ran.code == 0, ran.err
    lines = ran.out.splitlines()
    assert lines[0] == "domain acme: 2 version(s) kept, newest first"
    assert lines[2].startswith("      2  ")
    assert lines[2].endswith("  ops  tech-pl")
    assert lines[3].startswith("      1  ")
    assert lines[3].endswith("  ops  as configured")
    ran = await switchboard(
        "policy", "history", "--domain", "acme", "--show", "1", *target, env=env
    )
    assert ran.out == ACME

    ran = await switchboard(
        "policy",
        "rollback",
        "--domain",
        "acme",
        "--to",
        "1",
        "--comment",
        "not yet",
        *target,
        env=env,
    )
    assert ran.code == 0, ran.err
    assert "(restores 1)  not yet" in ran.out

    ran = await switchboard("policy", "history", "--domain", "globex", *target, env=env)
    assert ran.code == 1
    assert ran.err == "error: PERMISSION_DENIED: domain 'globex' is not in your token's domains\n"


async def test_make_run_applies_each_tenants_policy_once(
    kafka: KafkaBroker, router: Router, tmp_path: Path
) -> None:
    token = tmp_path / "ops.jwt"
    token.write_text(ISSUER.mint("ops", audience=AUDIENCES["router"], roles=["operator"]))
    target = f"127.0.0.1:{router.port}"
    tenants = demo_policies()
    assert await apply_demo_policies(target, token, tenants) == [
        "acme: version 1 applied from deploy/policies/acme.toml",
        "wroclaw: version 1 applied from deploy/policies/wroclaw.toml",
    ]
    # the next `make run` on the same broker: nothing new
    assert await apply_demo_policies(target, token, tenants) == [
        "acme: version 1 already has deploy/policies/acme.toml",
        "wroclaw: version 1 already has deploy/policies/wroclaw.toml",
    ]
    written = await records(kafka, router.topics, 2)
    assert sorted((r.key, changed(r).current.comment) for r in written) == [
        (b"acme", "make run: deploy/policies/acme.toml"),
        (b"wroclaw", "make run: deploy/policies/wroclaw.toml"),
    ]
    # a file that changed becomes a new version; one the service refuses stops the start
    edited = [replace(tenants[0], document=tenants[0].document.replace("= 120", "= 90", 1))]
    assert await apply_demo_policies(target, token, edited) == [
        "acme: version 2 applied from deploy/policies/acme.toml"
    ]
    broken = [replace(tenants[1], document="[routing]\nmax_total = 0\n")]
    with pytest.raises(LaunchError, match=r"policy of wroclaw .* INVALID_ARGUMENT: routing"):
        await apply_demo_policies(target, token, broken)


async def test_a_version_applied_through_the_service_routes_the_domain(
    kafka: KafkaBroker, router: Router
) -> None:
    """End to end: PolicyService writes, the router applies it (it reads `policies` as an
    input), RouterAdmin shows the tenant's own queues and decisions carry the version."""
    ops = bearer("ops", "router", "operator")
    reply = await stub(router.port, ops).ApplyPolicy(
        policy_pb2.ApplyPolicyRequest(domain="wroclaw", document=WROCLAW, comment="Polish only")
    )
    assert reply.applied.version == 1
    CHANNELS.append(channel_as(router.port, ops))
    admin = router_admin_pb2_grpc.RouterAdminStub(CHANNELS[-1])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        stats = await admin.GetQueueStats(router_admin_pb2.GetQueueStatsRequest(domain="wroclaw"))
        shown = {(q.queue, q.policy_version) for q in stats.queues}
        if shown == {("faktury", 1), ("serwis", 1), ("sprzedaz", 1)}:
            break
        assert loop.time() < deadline, f"RouterAdmin shows {shown}"
        await asyncio.sleep(0.1)

    agent = new_envelope("wroclaw", "desk", event_id="login-wroclaw-w1")
    agent.agent_logged_in.agent_id = "w1"
    agent.agent_logged_in.languages.append("pl")
    agent.agent_logged_in.skills.add(skill="billing", proficiency=5)
    agent.agent_logged_in.capacity.add(channel=common_pb2.CHANNEL_VOICE, max_concurrent=1)
    await kafka.produce(router.topics.agent_events, [encode_envelope(agent)])
    await kafka.produce(router.topics.contact_events, [arrive("k1", "faktury", "wroclaw")])
    seen = await wait_for(kafka, router.topics.routing_decisions, lambda ds: bool(offers(ds)))
    [offer] = [d for d in seen if d.HasField("offer_made")]
    assert (offer.domain, offer.offer_made.queue, offer.policy_version) == ("wroclaw", "faktury", 1)
