"""Config: TOML plus env vars, defaults that work locally, errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.config import ServiceSettings
from services.common.errors import ConfigError


def test_defaults_point_at_the_local_broker() -> None:
    settings = ServiceSettings.from_env({})
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert settings.log.format == "auto"


def test_env_overrides_toml(tmp_path: Path) -> None:
    config = tmp_path / "svc.toml"
    config.write_text('[kafka]\nbootstrap_servers = "k1:9092"\ntopic_prefix = "a."\n')
    settings = ServiceSettings.from_env(
        {"SWITCHBOARD_CONFIG": str(config), "SWITCHBOARD_KAFKA__TOPIC_PREFIX": "b."}
    )
    assert settings.kafka.bootstrap_servers == "k1:9092"
    assert settings.kafka.topic_prefix == "b."


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS": "no-port"}, "kafka.bootstrap_servers"),
        ({"SWITCHBOARD_METRICS__PORT": "99999"}, "metrics.port"),
        ({"SWITCHBOARD_LOG__LEVEL": "loud"}, "log.level"),
        ({"SWITCHBOARD_KAFKA__MAX_BATCH": "zero"}, "kafka.max_batch"),
        ({"SWITCHBOARD_KAFKA__BOGUS": "1"}, "kafka.bogus"),
        ({"SWITCHBOARD_KAFKA__OUTPUT_FORMAT": "xml"}, "kafka.output_format"),
    ],
)
def test_a_wrong_value_fails_naming_the_field(env: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        ServiceSettings.from_env(env)


def test_missing_config_file_is_named() -> None:
    with pytest.raises(ConfigError, match="SWITCHBOARD_CONFIG: file not found"):
        ServiceSettings.from_env({"SWITCHBOARD_CONFIG": "/nonexistent/router.toml"})


def test_invalid_toml_is_reported(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[kafka\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        ServiceSettings.from_env({"SWITCHBOARD_CONFIG": str(config)})


def test_output_format_is_protobuf_unless_json_is_asked_for(tmp_path: Path) -> None:
    assert ServiceSettings.from_env({}).kafka.output_format == "protobuf"
    config = tmp_path / "svc.toml"
    config.write_text('[kafka]\noutput_format = "json"\n')
    assert ServiceSettings.from_env({"SWITCHBOARD_CONFIG": str(config)}).kafka.output_format == (
        "json"
    )
    assert (
        ServiceSettings.from_env(
            {"SWITCHBOARD_CONFIG": str(config), "SWITCHBOARD_KAFKA__OUTPUT_FORMAT": "protobuf"}
        ).kafka.output_format
        == "protobuf"
    )
