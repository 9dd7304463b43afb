"""Validated configuration: one pydantic model per service, from a TOML file and env vars.

Precedence (highest first): environment variables, the TOML file, model defaults.
Env vars are ``SWITCHBOARD_<FIELD>``, nested with ``__``, e.g.
``SWITCHBOARD_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:9092``; the TOML file is named by
``SWITCHBOARD_CONFIG``. Defaults work against the local broker from ``make kafka-up``.

A wrong value raises :class:`ConfigError` naming every bad field, before anything connects.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from services.common.codec import OutputFormat
from services.common.errors import ConfigError

__all__ = [
    "ENV_PREFIX",
    "GrantSettings",
    "GrpcClientSettings",
    "GrpcSettings",
    "IdentitySettings",
    "JwtSettings",
    "KafkaSettings",
    "LogSettings",
    "MetricsSettings",
    "ServiceSettings",
    "load_settings",
]

ENV_PREFIX = "SWITCHBOARD_"
CONFIG_FILE_VAR = "SWITCHBOARD_CONFIG"

_Model = TypeVar("_Model", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(_Strict):
    """Where the broker is and how topics are named."""

    bootstrap_servers: str = "127.0.0.1:9092"
    #: Prepended to every topic name; lets tests and tenants share one broker.
    topic_prefix: str = ""
    #: Consumer group; services default it to their own name.
    group_id: str = ""
    #: How the service writes its output topic (router: routing.decisions, escalation:
    #: escalations, notifier: notifications): "protobuf" (binary, the default) or "json"
    #: (the protobuf JSON mapping, camelCase names, enums by name, one line per record).
    #: Either way each record carries ``content-type: application/x-protobuf`` or
    #: ``application/json``, and every service reads both. Changelogs stay binary (they
    #: are internal state); a dead letter keeps the bytes and headers it came with.
    output_format: OutputFormat = "protobuf"
    #: Largest record the services produce (key, value and headers); a bigger one becomes
    #: a dead letter cut to fit. Keep it under the broker's ``message.max.bytes``.
    max_record_bytes: int = Field(default=1_000_000, ge=10_000, le=100_000_000)
    #: Event ids remembered per domain to skip a re-sent event (kept in the changelog):
    #: the last this many ids of the domain, or the last ``dedupe_max_age_s``, whichever
    #: is fewer. Memory is about 100 bytes an id, per domain an instance owns.
    dedupe_max_ids: int = Field(default=10_000, ge=1, le=10_000_000)
    dedupe_max_age_s: float = Field(default=3_600.0, gt=0)
    #: Most routing domains (tenants) one instance serves; an event of one more is
    #: dead-lettered (each domain holds its state in memory).
    max_domains: int = Field(default=10_000, ge=1, le=1_000_000)
    #: Longest a restore waits for an in-doubt transaction on a changelog partition.
    restore_wait_s: float = Field(default=90.0, gt=0)
    #: Upper bound on records handled per transaction.
    max_batch: int = Field(default=500, ge=1, le=100_000)
    #: Longest a poll waits when idle, so timers and commands run promptly.
    poll_interval_ms: int = Field(default=50, ge=1, le=10_000)
    request_timeout_ms: int = Field(default=30_000, ge=1_000)
    #: PLAINTEXT only for a broker on loopback (the local one); SASL_SSL (SCRAM) or SSL
    #: (mTLS) wherever traffic crosses a network.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_SSL"] = "PLAINTEXT"
    #: CA bundle that signed the brokers' certificates (absent: the system's CAs).
    ssl_ca_file: Path | None = None
    #: This service's client certificate and key (mTLS, with ``SSL``).
    ssl_cert_file: Path | None = None
    ssl_key_file: Path | None = None
    sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    sasl_username: str = ""
    #: The SCRAM password, from a file (a mounted secret) ...
    sasl_password_file: Path | None = None
    #: ... or the environment (``SWITCHBOARD_KAFKA__SASL_PASSWORD``), exactly as given.
    sasl_password: SecretStr | None = None

    @model_validator(mode="after")
    def _security_complete(self) -> KafkaSettings:
        if self.security_protocol == "SASL_SSL":
            if not self.sasl_username:
                raise ValueError("sasl_username: required with security_protocol SASL_SSL")
            if (self.sasl_password is None) == (self.sasl_password_file is None):
                raise ValueError(
                    "sasl_password / sasl_password_file: set exactly one with SASL_SSL"
                )
        if (self.ssl_cert_file is None) != (self.ssl_key_file is None):
            raise ValueError("ssl_cert_file and ssl_key_file: set both or neither")
        return self

    @field_validator("bootstrap_servers")
    @classmethod
    def _has_host_and_port(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port...], got {value!r}")
        return value


class MetricsSettings(_Strict):
    """Prometheus endpoint."""

    host: str = "127.0.0.1"
    #: 0 picks a free port (tests); the chosen port is logged.
    port: int = Field(default=9400, ge=0, le=65535)


class GrpcSettings(_Strict):
    """gRPC server address and optional TLS."""

    host: str = "127.0.0.1"
    #: 0 picks a free port (tests).
    port: int = Field(default=50051, ge=0, le=65535)
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    #: CA bundle to verify client certificates (mTLS); absent means no client certs asked.
    tls_client_ca_file: Path | None = None
    #: Seconds in-flight calls get to finish on shutdown.
    shutdown_grace: float = Field(default=5.0, ge=0)
    #: A plaintext port serving only the health service, for Kubernetes' gRPC probes
    #: (which speak no TLS); 0: none.
    health_port: int = Field(default=0, ge=0, le=65535)
    #: Largest request message accepted (requests are small: ids, a note, a message text).
    max_request_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    #: Calls (Watch streams included) served at once; past it, RESOURCE_EXHAUSTED.
    max_concurrent_rpcs: int = Field(default=512, ge=1, le=100_000)


class GrpcClientSettings(_Strict):
    """How a Switchboard gRPC client identifies itself and protects the connection."""

    #: The bearer token (a JWT from the identity provider), from a file (a mounted secret) ...
    token_file: Path | None = None
    #: ... or the environment, exactly as given.
    token: SecretStr | None = None
    #: CA bundle that signed the server's certificate (absent: the system's CAs).
    tls_ca_file: Path | None = None
    #: This client's certificate and key (mTLS), if the server asks for one.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    #: No TLS: only for a server on loopback (the demo); refused for any other address.
    plaintext: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> GrpcClientSettings:
        if self.token is not None and self.token_file is not None:
            raise ValueError("token / token_file: set at most one")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file: set both or neither")
        if self.plaintext and (self.tls_ca_file or self.tls_cert_file):
            raise ValueError("plaintext: conflicts with the tls_* files")
        return self


class GrantSettings(_Strict):
    """What a caller presenting a configured client certificate may do."""

    roles: list[Literal["manager", "operator", "service"]] = Field(min_length=1)
    #: Team names, or "*" for every team.
    teams: list[str] = Field(default_factory=list, max_length=256)
    #: Routing domains, or "*" for every domain.
    domains: list[str] = Field(default_factory=list, max_length=256)


class JwtSettings(_Strict):
    """Bearer tokens: whose keys sign them and who they must be for."""

    #: A JWKS document on disk (read at start) ...
    jwks_file: Path | None = None
    #: ... or fetched over HTTPS (at start, then cached). Exactly one of the two.
    jwks_url: str | None = None
    #: CA bundle for the provider's HTTPS certificate (absent: the system's CAs).
    jwks_ca_file: Path | None = None
    #: The ``aud`` every token must carry; a token for another service is refused.
    audience: str = Field(min_length=1)
    #: The ``iss`` every token must carry, if set.
    issuer: str | None = None
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256", "EdDSA"])
    #: Clock skew tolerated on ``exp``/``nbf``.
    leeway_s: float = Field(default=30.0, ge=0, le=300)

    @field_validator("jwks_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("https://"):
            raise ValueError("must be an https:// URL")
        return value


class IdentitySettings(_Strict):
    """How a gRPC server identifies its callers. Nothing configured: it refuses to start.

    ``profile = "demo"`` (what ``make run`` uses) is the one relaxation: plaintext gRPC,
    allowed only on a loopback address; its keys and tokens are generated at setup.
    """

    profile: Literal["production", "demo"] = "production"
    jwt: JwtSettings | None = None
    #: Client-certificate name (common name or subject alternative name) -> its grant.
    certificates: dict[str, GrantSettings] = Field(default_factory=dict, max_length=1_000)


class LogSettings(_Strict):
    """structlog output."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    #: auto: pretty on a terminal, JSON otherwise.
    format: Literal["auto", "json", "console"] = "auto"


class ServiceSettings(_Strict):
    """Fields every service has; each service subclasses this with its own."""

    kafka: KafkaSettings = KafkaSettings()
    metrics: MetricsSettings = MetricsSettings()
    grpc: GrpcSettings = GrpcSettings()
    log: LogSettings = LogSettings()
    identity: IdentitySettings = IdentitySettings()
    #: Name of this instance in logs and the default transactional id.
    instance: str = "local"

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, config_file: Path | None = None
    ) -> Self:
        """Load from ``env`` (default ``os.environ``) and the TOML file it names."""
        return load_settings(cls, os.environ if env is None else env, config_file)


def _env_tree(env: Mapping[str, str]) -> dict[str, Any]:
    """``SWITCHBOARD_A__B=1`` -> ``{"a": {"b": "1"}}``."""
    tree: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_FILE_VAR:
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        node = tree
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(path)}: conflicts with {ENV_PREFIX}{part.upper()}")
            node = child
        node[path[-1]] = value
    return tree


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(root)"
        lines.append(f"{field}: {item['msg']}")
    return "; ".join(lines)


def load_settings(
    model: type[_Model], env: Mapping[str, str], config_file: Path | None = None
) -> _Model:
    """Build ``model`` from the TOML file (``config_file`` or ``$SWITCHBOARD_CONFIG``) and env."""
    data: dict[str, Any] = {}
    path = config_file or (Path(env[CONFIG_FILE_VAR]) if env.get(CONFIG_FILE_VAR) else None)
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{CONFIG_FILE_VAR}: file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{CONFIG_FILE_VAR}: {path} is not valid TOML: {exc}") from None
    data = _merge(data, _env_tree(env))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration: {_describe(exc)}") from None
