"""The demo tenants' policies: ``make run`` applies each ``deploy/policies/<domain>.toml``
to its domain through the router's PolicyService, as an operator would
(``switchboard policy apply``), with the demo operator's token.

Applied once the router is SERVING and before the simulator starts, so the day's traffic
runs under each tenant's own policy from its first event. A domain whose current version
already has the file's document is left alone (a second ``make run`` on the same broker
adds no version); a changed file becomes a new version.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from switchboard.v1 import policy_pb2, policy_pb2_grpc

from services.common.grpc_client import bearer_metadata
from services.launcher.errors import LaunchError
from services.launcher.plan import ROOT

__all__ = ["POLICIES_DIR", "DemoPolicy", "apply_demo_policies", "demo_policies", "expected_version"]

#: One file per demo tenant, named after its domain.
POLICIES_DIR = ROOT / "deploy" / "policies"
#: How long the PolicyService may answer UNAVAILABLE (its view of `policies` still
#: loading right after start) before the launcher gives up.
READY_WAIT_S = 60.0


@dataclass(frozen=True, slots=True)
class DemoPolicy:
    domain: str
    path: Path
    document: str


def demo_policies(directory: Path = POLICIES_DIR) -> list[DemoPolicy]:
    """The ``<domain>.toml`` files of ``directory``, by domain (none if it is absent)."""
    if not directory.is_dir():
        return []
    return [
        DemoPolicy(path.stem, path, path.read_text(encoding="utf-8"))
        for path in sorted(directory.glob("*.toml"))
    ]


def expected_version(versions: Sequence[policy_pb2.PolicyVersion], document: str) -> int | None:
    """The version an apply of ``document`` is based on; None if the current version
    already has exactly this document (nothing to apply)."""
    if not versions:
        return 0
    if versions[0].document == document:
        return None
    return versions[0].version


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


async def apply_demo_policies(
    target: str, token_file: Path, policies: Sequence[DemoPolicy], *, wait_s: float = READY_WAIT_S
) -> list[str]:
    """Apply each policy not already current; one line per domain saying what happened.
    :class:`LaunchError` if the service refuses one (e.g. an invalid file, named)."""
    token = await asyncio.to_thread(token_file.read_text, encoding="ascii")
    metadata = bearer_metadata(token.strip())
    lines = []
    async with grpc.aio.insecure_channel(target) as channel:
        stub = policy_pb2_grpc.PolicyServiceStub(channel)
        for policy in policies:
            lines.append(await _apply_one(stub, metadata, policy, wait_s))
    return lines


async def _apply_one(
    stub: policy_pb2_grpc.PolicyServiceAsyncStub,
    metadata: tuple[tuple[str, str], ...],
    policy: DemoPolicy,
    wait_s: float,
) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        try:
            reply = await stub.GetPolicyHistory(
                policy_pb2.GetPolicyHistoryRequest(domain=policy.domain),
                metadata=metadata,
                timeout=30,
            )
            expected = expected_version(reply.versions, policy.document)
            if expected is None:
                return (
                    f"{policy.domain}: version {reply.versions[0].version} already has "
                    f"{_shown(policy.path)}"
                )
            applied = await stub.ApplyPolicy(
                policy_pb2.ApplyPolicyRequest(
                    domain=policy.domain,
                    document=policy.document,
                    comment=f"make run: {_shown(policy.path)}",
                    expected_version=expected,
                ),
                metadata=metadata,
                timeout=30,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE and loop.time() < deadline:
                await asyncio.sleep(0.5)  # the view of `policies` is still loading
                continue
            raise LaunchError(
                f"policy of {policy.domain} ({_shown(policy.path)}) not applied: "
                f"{exc.code().name}: {exc.details()}"
            ) from None
        return (
            f"{policy.domain}: version {applied.applied.version} applied from {_shown(policy.path)}"
        )
