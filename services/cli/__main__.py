"""switchboard: one command for managers and operators.

    switchboard escalations watch|list|ack|note|resolve   managers: your teams' escalations
    switchboard queues | agents | contact ID               operators: the router's view
    switchboard dlq list|show|replay                       operators: dead letters
    switchboard topics                                     operators: offsets and lag
    switchboard policy validate|diff|apply|history|rollback operators: a domain's policies
    switchboard whatif --domain acme --from T1 --to T2 --policy new.toml
                                                           planners: replay recorded traffic
    switchboard whatif --target 80/20 --queue billing-en   planners: fewest agents for a target
    switchboard simulate --agents 12 --extra-agents 3      planners: a simulated day

gRPC commands read your token from --token-file, $SWITCHBOARD_TOKEN_FILE or
$SWITCHBOARD_TOKEN, never from the command line. Kafka commands take the broker and its
security from flags or the services' SWITCHBOARD_KAFKA__* variables. Exit status: 0 done,
1 refused or failed (the server's or broker's answer is printed), 2 a usage or
configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

import grpc
from aiokafka.errors import KafkaError

from services.cli import dlq, escalations, policy, router_admin, topics, whatif
from services.common.errors import ConfigError

__all__ = ["build_parser", "main"]


class _Help(argparse.RawDescriptionHelpFormatter):
    """Descriptions keep their line breaks (the examples above)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchboard", description=__doc__, formatter_class=_Help)
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also print the Kafka and gRPC libraries' own warnings (e.g. an ACL refusal "
        "they log rather than raise)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (escalations, router_admin, policy, dlq, topics, whatif):
        group.register(commands, _Help)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    # The command says what failed; the libraries' own lines would say it again, raw.
    logging.basicConfig(
        level=logging.WARNING if args.verbose else logging.CRITICAL, format="%(name)s: %(message)s"
    )
    try:
        code = asyncio.run(args.run(args, os.environ))
    except KeyboardInterrupt:
        code = 0  # watch runs until Ctrl-C
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    except grpc.aio.AioRpcError as exc:
        print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
        code = 1
    except (KafkaError, LookupError, TimeoutError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
