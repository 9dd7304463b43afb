"""Simulator options from the command line, with the services' env vars as defaults.

The broker address and topic prefix default to the same ``SWITCHBOARD_KAFKA__*`` variables
the services read, so one environment points everything at the same broker.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast, get_args

from services.common.codec import OutputFormat
from services.common.config import KafkaSettings
from services.common.errors import ConfigError

__all__ = ["SimulatorSettings"]


@dataclass(frozen=True, slots=True)
class SimulatorSettings:
    """Everything ``python -m services.simulator`` needs to run."""

    scenario: str
    bootstrap_servers: str
    topic_prefix: str
    rate: float | None
    #: Seconds to run; ``None`` means the scenario's own, 0 means until stopped.
    duration: float | None
    domain: str | None
    seed: int
    report: Path | None
    log_format: str
    #: How events are written: as the services write their outputs (``kafka.output_format``).
    output_format: OutputFormat = "protobuf"

    @classmethod
    def from_args(cls, argv: Sequence[str] | None, env: Mapping[str, str]) -> SimulatorSettings:
        env_kafka = "SWITCHBOARD_KAFKA__"
        parser = argparse.ArgumentParser(
            prog="python -m services.simulator",
            description="Simulated telephony platform and agent desktops, over Kafka.",
        )
        parser.add_argument(
            "--scenario", default="quiet-day", help="name in deploy/scenarios or a path"
        )
        parser.add_argument(
            "--bootstrap-servers",
            default=env.get(f"{env_kafka}BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        )
        parser.add_argument(
            "--topic-prefix", default=env.get("SWITCHBOARD_KAFKA__TOPIC_PREFIX", "")
        )
        parser.add_argument(
            "--rate", type=float, default=None, help="arrivals per second at profile 1.0"
        )
        parser.add_argument(
            "--duration", type=float, default=None, help="seconds; 0 = until stopped"
        )
        parser.add_argument(
            "--domain", default=None, help="routing domain (default: the scenario's)"
        )
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument(
            "--report", type=Path, default=None, help="write final statistics (JSON)"
        )
        parser.add_argument(
            "--log-format",
            choices=("auto", "json", "console"),
            default=env.get("SWITCHBOARD_LOG__FORMAT", "auto"),
        )
        parser.add_argument(
            "--output-format",
            default=env.get(f"{env_kafka}OUTPUT_FORMAT", "protobuf"),
            help="protobuf (default) or json (the protobuf JSON mapping, content-type header)",
        )
        args = parser.parse_args(argv)
        if args.output_format not in get_args(OutputFormat):
            raise ConfigError(
                f"--output-format: expected protobuf or json, got {args.output_format!r}"
            )
        # Same validation as the services, so a typo fails the same way everywhere.
        try:
            KafkaSettings(bootstrap_servers=args.bootstrap_servers)
        except ValueError as exc:
            raise ConfigError(f"--bootstrap-servers: {exc}") from None
        if args.rate is not None and args.rate < 0:
            raise ConfigError("--rate: must be >= 0")
        if args.duration is not None and args.duration < 0:
            raise ConfigError("--duration: must be >= 0")
        return cls(
            scenario=args.scenario,
            bootstrap_servers=args.bootstrap_servers,
            topic_prefix=args.topic_prefix,
            rate=args.rate,
            duration=args.duration,
            domain=args.domain,
            seed=args.seed,
            report=args.report,
            log_format=args.log_format,
            output_format=cast(OutputFormat, args.output_format),
        )
