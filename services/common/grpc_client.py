"""How every Switchboard gRPC client connects: TLS (with an optional client certificate)
and a bearer token on every call; plaintext only to a loopback address (the demo)."""

from __future__ import annotations

import grpc

from services.common.config import GrpcClientSettings
from services.common.errors import ConfigError

__all__ = ["bearer_metadata", "is_loopback", "open_channel", "read_token"]

_LOOPBACK = ("127.0.0.1", "[::1]", "localhost")


def is_loopback(target: str) -> bool:
    host = target.rpartition(":")[0] or target
    return host in _LOOPBACK


def read_token(settings: GrpcClientSettings, field: str = "token") -> str:
    """The bearer token, exactly as given (case and all), or "" if none is configured."""
    if settings.token is not None:
        return settings.token.get_secret_value().strip()
    if settings.token_file is None:
        return ""
    try:
        return settings.token_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            f"{field}_file: cannot read {settings.token_file}: {exc.strerror}"
        ) from None


def bearer_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying ``token`` (none without one: the server then refuses)."""
    return (("authorization", f"Bearer {token}"),) if token else ()


def _read(path: object, field: str) -> bytes | None:
    if path is None:
        return None
    try:
        with open(str(path), "rb") as source:
            return source.read()
    except OSError as exc:
        raise ConfigError(f"{field}: cannot read {path}: {exc.strerror}") from None


def open_channel(target: str, settings: GrpcClientSettings) -> grpc.aio.Channel:
    """A channel to ``target``: TLS unless ``plaintext`` (loopback only)."""
    if settings.plaintext:
        if not is_loopback(target):
            raise ConfigError(
                f"plaintext: refused for {target!r}; only a loopback server may be reached "
                "without TLS (set tls_ca_file, or leave plaintext off to use the system CAs)"
            )
        return grpc.aio.insecure_channel(target)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(settings.tls_ca_file, "tls_ca_file"),
        private_key=_read(settings.tls_key_file, "tls_key_file"),
        certificate_chain=_read(settings.tls_cert_file, "tls_cert_file"),
    )
    return grpc.aio.secure_channel(target, credentials)
