"""How ``switchboard dlq`` and ``switchboard topics`` reach the broker: each option from its
flag, else from the environment variable the services read (``SWITCHBOARD_KAFKA__*``), so
a shell set up like a service's works as it is. The SASL password comes from a file or
``SWITCHBOARD_KAFKA__SASL_PASSWORD``, never the command line."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from services.common.config import KafkaSettings
from services.common.errors import ConfigError

__all__ = ["add_kafka_options", "kafka_settings"]

_ENV = "SWITCHBOARD_KAFKA__"
#: flag dest -> KafkaSettings field (and the variable SWITCHBOARD_KAFKA__<FIELD>).
_FIELDS = {
    "bootstrap_servers": "bootstrap_servers",
    "topic_prefix": "topic_prefix",
    "security_protocol": "security_protocol",
    "kafka_ca_file": "ssl_ca_file",
    "kafka_cert": "ssl_cert_file",
    "kafka_key": "ssl_key_file",
    "sasl_mechanism": "sasl_mechanism",
    "sasl_username": "sasl_username",
    "sasl_password_file": "sasl_password_file",
}


def add_kafka_options(parser: argparse.ArgumentParser, *, repeat: bool = False) -> None:
    """The broker options; ``repeat`` adds them again after a subcommand."""

    def add(flag: str, field: str, text: str, **kwargs: Any) -> None:
        parser.add_argument(
            flag,
            default=argparse.SUPPRESS if repeat else None,
            help=f"{text}; else ${_ENV}{field.upper()}",
            **kwargs,
        )

    add("--bootstrap-servers", "bootstrap_servers", "host:port[,...], default 127.0.0.1:9092")
    add("--topic-prefix", "topic_prefix", "the deployment's topic prefix, default none")
    add(
        "--security-protocol",
        "security_protocol",
        "PLAINTEXT (default; the local broker), SASL_SSL (SCRAM) or SSL (mTLS)",
        choices=("PLAINTEXT", "SASL_SSL", "SSL"),
    )
    add("--kafka-ca-file", "ssl_ca_file", "CA bundle of the brokers' certificates", type=Path)
    add("--kafka-cert", "ssl_cert_file", "your client certificate (SSL, mTLS)", type=Path)
    add("--kafka-key", "ssl_key_file", "its key (SSL, mTLS)", type=Path)
    add(
        "--sasl-mechanism",
        "sasl_mechanism",
        "SCRAM-SHA-512 (default) or SCRAM-SHA-256, with SASL_SSL",
        choices=("SCRAM-SHA-256", "SCRAM-SHA-512"),
    )
    add("--sasl-username", "sasl_username", "your Kafka user (SASL_SSL), e.g. operator")
    add(
        "--sasl-password-file",
        "sasl_password_file",
        "file holding its password (never the command line; the password itself may be "
        "in $SWITCHBOARD_KAFKA__SASL_PASSWORD)",
        type=Path,
    )


def kafka_settings(args: argparse.Namespace, env: Mapping[str, str]) -> KafkaSettings:
    """The connection settings: flags first, then ``SWITCHBOARD_KAFKA__*``, then defaults."""
    values: dict[str, Any] = {}
    for dest, field in _FIELDS.items():
        value = getattr(args, dest, None)
        if value is None:
            value = env.get(f"{_ENV}{field.upper()}") or None
        if value is not None:
            values[field] = value
    password = env.get(f"{_ENV}SASL_PASSWORD")
    if password and "sasl_password_file" not in values:
        values["sasl_password"] = password
    try:
        return KafkaSettings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'kafka'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"kafka options: {problems}") from None
