"""docs/integrating.md, run as an integrator would type it: every shell block marked
``<!-- guide: run -->`` or ``<!-- guide: retry -->`` runs verbatim, in order, in one shell
session (kcat and jq, JSON only) against a broker of the test's own and the three real
services with the demo configuration; every JSON example in the guide must be a valid
envelope, and every event type must have one. The only thing the test sets is ``BROKER``.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from switchboard.v1.envelope_pb2 import Envelope

from services.common.codec import JSON_CONTENT_TYPE, decode_envelope
from services.common.errors import DecodeError
from services.common.provision import ensure_topics
from services.common.topics import Topics, load_topic_specs
from services.notifier.gateway_stub import ReferenceGateway
from tests.scenario import audit_ok
from tests.support import (
    PrivateBroker,
    ServiceProcess,
    free_port,
    service_env,
    service_process,
    until,
)

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "integrating.md"
BLOCK = re.compile(r"<!-- guide: (run|retry) -->\n```sh\n(.*?)```", re.DOTALL)
JSON_BLOCK = re.compile(r"```json\n(.*?)```", re.DOTALL)
#: What a command may take, and how long a ``retry`` block is retried (decisions are async).
COMMAND_TIMEOUT_S, RETRY_FOR_S = 30.0, 60.0


@dataclass(frozen=True)
class Step:
    kind: str  # "run" once, or "retry" until it exits 0
    script: str
    line: int


def guide_steps(text: str) -> list[Step]:
    return [
        Step(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1)
        for m in BLOCK.finditer(text)
    ]


def guide_examples(text: str) -> list[Envelope]:
    """Every ```json block of the guide, decoded as the services decode a JSON record."""
    examples = []
    for match in JSON_BLOCK.finditer(text):
        raw = match.group(1).replace("\n", "").encode()
        line = text.count("\n", 0, match.start()) + 1
        try:
            examples.append(decode_envelope(raw, [("content-type", JSON_CONTENT_TYPE.encode())]))
        except DecodeError as exc:
            raise AssertionError(f"docs/integrating.md:{line}: {exc}") from None
    return examples


def test_every_json_example_is_an_envelope_and_every_event_has_one() -> None:
    examples = guide_examples(GUIDE.read_text(encoding="utf-8"))
    shown = {e.WhichOneof("payload") for e in examples}
    payloads = {f.name for f in Envelope.DESCRIPTOR.oneofs_by_name["payload"].fields}
    # the services' own outputs, the escalation instances' commands to each other, and
    # policies (written by the router's PolicyService, never by a telephony platform)
    internal = {
        "escalation_record",
        "notification_record",
        "escalation_command",
        "escalation_command_result",
        "policy_changed",
    }
    assert payloads - internal - shown == set(), "events with no JSON example in the guide"


class GuideShell:
    """Runs the guide's blocks as one shell session: variables (OFFER) and functions
    (publish) defined by one block are there for the next, as in a terminal."""

    def __init__(self, workdir: Path, broker: str) -> None:
        self.state = workdir / "shell-state.sh"
        self.state.write_text("")
        self.env = os.environ | {"BROKER_UNDER_TEST": broker}

    def _wrapped(self, script: str) -> str:
        # The guide's `BROKER=...` line names make run's broker; the test's wins.
        return (
            "set -a\n"
            f"source {self.state}\n"
            "set -e\n"  # any failing command fails the block, as a reader would notice
            f"{script}\n"
            "__status=$?\n"
            "set +e\n"
            'BROKER="$BROKER_UNDER_TEST"\n'
            f"{{ export -p; declare -f; }} > {self.state}\n"
            "exit $__status\n"
        )

    async def run(self, step: Step) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (RETRY_FOR_S if step.kind == "retry" else 0)
        while True:
            result = await asyncio.to_thread(
                subprocess.run,
                ["bash", "-c", self._wrapped(step.script)],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT_S,
                check=False,
            )
            if result.returncode == 0:
                return result.stdout
            if loop.time() > deadline:
                raise AssertionError(
                    f"docs/integrating.md:{step.line} exited {result.returncode}\n"
                    f"{step.script}\nstdout: {result.stdout[-1500:]}\nstderr: {result.stderr[-1500:]}"
                )
            await asyncio.sleep(0.5)  # a retry block polls a topic: the decision is on its way


@pytest.fixture
async def own_broker(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PrivateBroker]:
    """A broker with the guide's literal topic names (no test prefix) and no other traffic."""
    port = free_port()
    broker = PrivateBroker(
        bootstrap_servers=f"127.0.0.1:{port}",
        port=port,
        controller_port=free_port(),
        data_dir=tmp_path_factory.mktemp("guide-kafka"),
    )
    await broker.start()
    try:
        await ensure_topics(broker.bootstrap_servers, load_topic_specs())
        yield broker
    finally:
        await broker.stop()


@pytest.mark.kafka
@pytest.mark.e2e
@pytest.mark.skipif(
    not (shutil.which("kcat") and shutil.which("jq")), reason="the guide's tools: kcat and jq"
)
async def test_the_guide_runs_verbatim_against_the_real_stack(
    own_broker: PrivateBroker, gateway: tuple[ReferenceGateway, int], tmp_path: Path
) -> None:
    reference, gateway_port = gateway
    topics = Topics()  # the names the guide types
    processes: list[ServiceProcess] = []
    for name in ("router", "escalation", "notifier"):
        # as `SWITCHBOARD_KAFKA__OUTPUT_FORMAT=json make run`, which the guide starts with
        env = service_env(name, own_broker, topics, KAFKA__OUTPUT_FORMAT="json")
        if name == "notifier":
            env["SWITCHBOARD_GATEWAYS__DEFAULT"] = f"127.0.0.1:{gateway_port}"
        processes.append(service_process(name, env, tmp_path))
    await asyncio.gather(*(p.start() for p in processes))
    try:
        text = GUIDE.read_text(encoding="utf-8")
        steps = guide_steps(text)
        assert len(steps) >= 10, "the guide's runnable blocks were not found"
        shell = GuideShell(tmp_path, own_broker.bootstrap_servers)
        outputs = [await shell.run(step) for step in steps]
        assert any(o.strip() for o in outputs), "the guide's reads printed nothing"

        # The customer was told about the hold and the pause (and each resume), once each.
        told = {"pbx-1842-hold:hold_started", "pbx-1842-pause:pause_started"}
        await until(
            lambda: told <= {d.notification_id for d in reference.delivered},
            what="hold and pause notices for call-1842",
        )
        ids = [d.notification_id for d in reference.delivered]
        assert len(ids) == len(set(ids)), f"a notice was sent twice: {ids}"

        records = await own_broker.read_all(topics.routing_decisions, expect=10**9, timeout=0.5)
        assert all(
            dict(r.headers).get("content-type") == JSON_CONTENT_TYPE.encode() for r in records
        ), "a decision was not written as JSON"
        decisions = [decode_envelope(r.value, r.headers) for r in records]
        assigned = [
            d.contact_assigned.agent_id for d in decisions if d.HasField("contact_assigned")
        ]
        assert assigned == ["a-ola", "a-ben"]
        assert [d.contact_closed.contact_id for d in decisions if d.HasField("contact_closed")] == [
            "call-1842"
        ]
        rejected = {d.event_rejected.event_id for d in decisions if d.HasField("event_rejected")}
        assert rejected == {"desk-ola-accept-stale"}, "only the guide's stale accept is refused"
        await audit_ok(own_broker, topics)
    finally:
        codes = await asyncio.gather(*(p.stop() for p in processes))
        assert all(code == 0 for code in codes), f"unclean exits: {codes}; logs in {tmp_path}"
