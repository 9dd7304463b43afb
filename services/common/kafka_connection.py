"""How every Switchboard Kafka client connects: one place for the broker address, TLS
and SASL, so a service cannot have one plaintext client among secure ones."""

from __future__ import annotations

from typing import Any

from aiokafka.helpers import create_ssl_context

from services.common.config import KafkaSettings
from services.common.errors import ConfigError

__all__ = ["connection_options"]


def _password(settings: KafkaSettings) -> str:
    if settings.sasl_password is not None:
        return settings.sasl_password.get_secret_value()
    if settings.sasl_password_file is None:
        raise ConfigError("kafka.sasl_password: required with SASL_SSL")
    try:
        return settings.sasl_password_file.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(
            f"kafka.sasl_password_file: cannot read {settings.sasl_password_file}: {exc.strerror}"
        ) from None


def connection_options(settings: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client (consumer, producer, admin)."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol == "PLAINTEXT":
        return options
    try:
        options["ssl_context"] = create_ssl_context(
            cafile=settings.ssl_ca_file,
            certfile=settings.ssl_cert_file,
            keyfile=settings.ssl_key_file,
        )
    except (OSError, ValueError) as exc:
        raise ConfigError(f"kafka.ssl_*: cannot load the TLS files: {exc}") from None
    if settings.security_protocol == "SASL_SSL":
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = _password(settings)
    return options
