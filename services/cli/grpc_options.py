"""How a ``switchboard`` gRPC command reaches its server: the target, the caller's token
(from a file or the environment, never the command line, where other users of the
machine could read it), and TLS (``--ca-file``, ``--cert``/``--key`` for mTLS); plaintext
only to a loopback address."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
from pydantic import ValidationError

from services.common.config import GrpcClientSettings
from services.common.errors import ConfigError
from services.common.grpc_client import bearer_metadata, is_loopback, open_channel, read_token

__all__ = [
    "TOKEN_FILE_VAR",
    "TOKEN_VAR",
    "add_grpc_options",
    "client_settings",
    "connect",
]

TOKEN_FILE_VAR = "SWITCHBOARD_TOKEN_FILE"  # noqa: S105 - the variable's name, not a token
TOKEN_VAR = "SWITCHBOARD_TOKEN"  # noqa: S105 - the variable's name, not a token
Metadata = tuple[tuple[str, str], ...]


def add_grpc_options(parser: argparse.ArgumentParser, target: str, *, repeat: bool = False) -> None:
    """The connection options; ``repeat`` adds them again after a subcommand (they keep the
    value given before it unless given again)."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if repeat else value

    parser.add_argument(
        "--target", default=default(target), help=f"the server, host:port (default {target})"
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        default=default(None),
        help=f"file holding your JWT (else ${TOKEN_FILE_VAR}, else the token itself in "
        f"${TOKEN_VAR}; never on the command line)",
    )
    parser.add_argument(
        "--ca-file",
        type=Path,
        default=default(None),
        help="CA bundle that signed the server's certificate (TLS); off loopback TLS is "
        "always used, with the system's CAs if this is not given",
    )
    parser.add_argument(
        "--cert", type=Path, default=default(None), help="your client certificate (mTLS)"
    )
    parser.add_argument("--key", type=Path, default=default(None), help="its key (mTLS)")


def client_settings(args: argparse.Namespace, env: Mapping[str, str]) -> GrpcClientSettings:
    """Where the token and TLS files come from: flags, else the environment."""
    token_file = args.token_file or env.get(TOKEN_FILE_VAR) or None
    token = None if token_file else env.get(TOKEN_VAR) or None
    tls = bool(args.ca_file or args.cert)
    return GrpcClientSettings(
        token_file=Path(token_file) if token_file else None,
        token=token,
        tls_ca_file=args.ca_file,
        tls_cert_file=args.cert,
        tls_key_file=args.key,
        plaintext=not tls and is_loopback(args.target),
    )


@asynccontextmanager
async def connect(
    args: argparse.Namespace, env: Mapping[str, str]
) -> AsyncIterator[tuple[grpc.aio.Channel, Metadata]]:
    """A channel to ``args.target`` and the call metadata carrying the caller's token."""
    if (args.cert is None) != (args.key is None):
        raise ConfigError("--cert and --key: give both or neither")
    try:
        settings = client_settings(args, env)
    except ValidationError as exc:
        problems = "; ".join(str(e["msg"]) for e in exc.errors())
        raise ConfigError(f"connection options: {problems}") from None
    token = read_token(settings)
    if not token:
        raise ConfigError(f"no token: set {TOKEN_FILE_VAR} (or --token-file) or {TOKEN_VAR}")
    try:
        channel = open_channel(args.target, settings)
    except ValueError as exc:  # e.g. a certificate file that is no PEM
        raise ConfigError(f"TLS: {exc}") from None
    async with channel:
        yield channel, bearer_metadata(token)
