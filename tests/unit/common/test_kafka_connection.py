"""Kafka connection settings: SASL_SSL and mTLS complete or refused at start, naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.config import KafkaSettings
from services.common.errors import ConfigError
from services.common.kafka_connection import connection_options


def test_plaintext_is_only_the_address() -> None:
    assert connection_options(KafkaSettings()) == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "PLAINTEXT",
    }


def test_sasl_ssl_needs_a_user_and_exactly_one_password() -> None:
    with pytest.raises(ValueError, match="sasl_username"):
        KafkaSettings(security_protocol="SASL_SSL", sasl_password="x")
    with pytest.raises(ValueError, match="sasl_password"):
        KafkaSettings(security_protocol="SASL_SSL", sasl_username="router")


def test_the_scram_password_is_read_from_its_file_exactly(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("Mixed-Case-Secret\n")
    settings = KafkaSettings(
        security_protocol="SASL_SSL", sasl_username="router", sasl_password_file=secret
    )
    options = connection_options(settings)
    assert options["sasl_plain_password"] == "Mixed-Case-Secret"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["ssl_context"].verify_mode.name == "CERT_REQUIRED"


def test_the_password_never_shows_in_the_settings_repr() -> None:
    settings = KafkaSettings(
        security_protocol="SASL_SSL", sasl_username="router", sasl_password="Hunter2"
    )
    assert "Hunter2" not in repr(settings)


def test_unreadable_tls_files_fail_at_start_naming_the_field(tmp_path: Path) -> None:
    settings = KafkaSettings(security_protocol="SSL", ssl_ca_file=tmp_path / "absent.pem")
    with pytest.raises(ConfigError, match=r"kafka\.ssl_"):
        connection_options(settings)


def test_a_client_certificate_needs_its_key() -> None:
    with pytest.raises(ValueError, match="ssl_key_file"):
        KafkaSettings(security_protocol="SSL", ssl_cert_file=Path("c.pem"))
