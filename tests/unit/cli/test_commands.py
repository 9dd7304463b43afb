"""`switchboard`: every option documented, options from flags or the services' variables
(never a secret on the command line), and the operators' tables (pure)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pytest
from google.protobuf.duration_pb2 import Duration
from switchboard.v1 import agent_events_pb2, common_pb2, router_admin_pb2

from services.cli.__main__ import build_parser
from services.cli.grpc_options import client_settings
from services.cli.kafka_client import Offsets
from services.cli.kafka_options import kafka_settings
from services.cli.router_admin import agent_line, contact_lines, queue_lines
from services.cli.topics import TopicState, lag_of, topic_lines
from services.common.errors import ConfigError


def parsers(parser: argparse.ArgumentParser, path: str = "switchboard"):  # type: ignore[no-untyped-def]
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from parsers(child, f"{path} {name}")


def test_every_command_and_option_has_help() -> None:
    seen = set()
    for path, parser in parsers(build_parser()):
        seen.add(path)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    assert choice.help, f"{path} {choice.dest}: no help"
            else:
                assert action.help, (path, action.dest)
                assert action.help != argparse.SUPPRESS, (path, action.dest)
    assert {
        "switchboard escalations watch",
        "switchboard escalations resolve",
        "switchboard queues",
        "switchboard agents",
        "switchboard contact",
        "switchboard dlq list",
        "switchboard dlq show",
        "switchboard dlq replay",
        "switchboard topics",
        "switchboard whatif",
        "switchboard simulate",
        "switchboard policy validate",
        "switchboard policy diff",
        "switchboard policy apply",
        "switchboard policy history",
        "switchboard policy rollback",
    } <= seen


def test_no_option_takes_a_token_or_a_password() -> None:
    for path, parser in parsers(build_parser()):
        for action in parser._actions:
            for flag in action.option_strings:
                assert not flag.endswith(("token", "password")), (path, flag)


def test_escalation_options_go_before_or_after_the_action() -> None:
    parser = build_parser()
    before = parser.parse_args(["escalations", "--target", "h:1", "--team", "a", "list"])
    after = parser.parse_args(["escalations", "list", "--target", "h:1", "--team", "a"])
    default = parser.parse_args(["escalations", "list"])
    assert (before.target, before.team) == (after.target, after.team) == ("h:1", ["a"])
    assert (default.target, default.team) == ("127.0.0.1:50052", [])


def test_the_token_comes_from_the_file_flag_then_the_environment() -> None:
    args = build_parser().parse_args(["queues"])
    env = {"SWITCHBOARD_TOKEN_FILE": "/run/t.jwt", "SWITCHBOARD_TOKEN": "x"}
    assert client_settings(args, env).token_file == Path("/run/t.jwt")
    assert client_settings(args, env).token is None
    only_token = client_settings(args, {"SWITCHBOARD_TOKEN": "abc"})
    assert only_token.token is not None
    assert only_token.token.get_secret_value() == "abc"
    assert client_settings(args, {}).plaintext  # loopback, no TLS files
    remote = build_parser().parse_args(["queues", "--target", "router.example:443"])
    assert not client_settings(remote, {}).plaintext


def test_kafka_options_come_from_flags_then_the_services_variables() -> None:
    parser = build_parser()
    env = {
        "SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS": "k1:9094",
        "SWITCHBOARD_KAFKA__TOPIC_PREFIX": "acme.",
        "SWITCHBOARD_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "SWITCHBOARD_KAFKA__SASL_USERNAME": "operator",
        "SWITCHBOARD_KAFKA__SASL_PASSWORD": "s3cret",
    }
    settings = kafka_settings(parser.parse_args(["dlq", "list"]), env)
    assert (settings.bootstrap_servers, settings.topic_prefix) == ("k1:9094", "acme.")
    assert settings.sasl_password is not None
    assert settings.sasl_password.get_secret_value() == "s3cret"
    flagged = parser.parse_args(
        ["dlq", "--bootstrap-servers", "k2:1", "list", "--topic-prefix", ""]
    )
    assert kafka_settings(flagged, env).bootstrap_servers == "k2:1"
    assert kafka_settings(parser.parse_args(["topics"]), {}).bootstrap_servers == "127.0.0.1:9092"
    with pytest.raises(ConfigError, match="sasl_username"):
        kafka_settings(parser.parse_args(["topics", "--security-protocol", "SASL_SSL"]), {})


def seconds(n: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(int(n * 1e9))
    return d


def test_queues_are_a_table_with_no_service_level_shown_as_a_dash() -> None:
    queues = [
        router_admin_pb2.QueueStats(
            domain="acme",
            queue="billing-en",
            waiting=3,
            offered=1,
            longest_wait=seconds(95.4),
            service_level=math.nan,
            answered=0,
            abandoned=0,
            estimated_wait=seconds(30),
            staffed_agents=2,
        ),
        router_admin_pb2.QueueStats(
            domain="acme", queue="agency-pl", service_level=0.8, answered=4
        ),
    ]
    assert queue_lines(queues) == [
        "DOMAIN       QUEUE            WAITING OFFERED  LONGEST EST.WAIT    SL ANSWERED ABANDONED STAFFED",
        "acme         agency-pl              0       0        -        -   80%        4         0       0",
        "acme         billing-en             3       1      95s      30s     -        0         0       2",
    ]
    assert queue_lines([]) == ["no queues"]


def test_an_agent_is_one_line_and_a_contact_says_where_it_stands() -> None:
    agent = router_admin_pb2.AgentView(
        agent_id="a1",
        domain="acme",
        team="billing-team",
        state=agent_events_pb2.AGENT_STATE_AWAY,
        reason="lunch",
        handled=3,
        languages=["en", "pl"],
    )
    agent.skills.add(skill="billing", proficiency=5)
    agent.capacity.add(channel=common_pb2.CHANNEL_VOICE, max_concurrent=1)
    agent.in_hand.add(channel=common_pb2.CHANNEL_VOICE, contacts=1)
    assert agent_line(agent) == (
        "acme  a1  team=billing-team  away (lunch)  in hand voice 1/1  handled 3  "
        "skills billing:5  languages en,pl"
    )
    contact = router_admin_pb2.GetContactResponse(
        contact_id="c2",
        queue="billing-en",
        position=2,
        estimated_wait=seconds(40),
        waited=seconds(12),
        channel=common_pb2.CHANNEL_CHAT,
        contact_status=router_admin_pb2.CONTACT_STATUS_WAITING,
    )
    assert contact_lines(contact) == [
        "contact c2",
        "  status     waiting",
        "  queue      billing-en",
        "  channel    chat",
        "  waited     12s",
        "  position   2",
        "  est. wait  40s",
    ]


def test_topics_show_records_and_each_groups_lag() -> None:
    offsets = Offsets(begin=(0, 5), end=(10, 9))
    committed = {("p.contact.events", 0): 10}  # partition 1 never committed: from its start
    assert lag_of("p.contact.events", offsets, committed) == 4
    assert lag_of("p.contact.events", offsets, {}) is None
    states = [
        TopicState("p.contact.events", offsets, {"router": 4, "notifier": 0}),
        TopicState("p.router.dlq", Offsets((0,), (0,)), {}),
        TopicState("p.gone", None, {}),
    ]
    assert topic_lines(states, partitions=True) == [
        "TOPIC            PARTITIONS   OFFSETS  LAG",
        "p.contact.events          2        14  router 4, notifier 0",
        "  partition 0: offsets 0-10",
        "  partition 1: offsets 5-9",
        "p.router.dlq              1         0  -",
        "  partition 0: offsets 0-0",
        "p.gone              missing",
    ]
