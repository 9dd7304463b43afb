"""The notifier's configuration.

Gateway endpoints: ``[gateways] default = "127.0.0.1:50060"`` plus optional per-channel
entries (``voice``, ``chat``, ``email``, ``sms``, ``social``); env override e.g.
``SWITCHBOARD_GATEWAYS__DEFAULT=127.0.0.1:50060``. ``[policy]`` feeds
:class:`NotifierPolicy`, ``[delivery]`` the retry policy (:meth:`DeliverySettings.retry`),
the call deadline, the circuit breaker and the worker's concurrency.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.common.config import (
    GrpcClientSettings,
    GrpcSettings,
    MetricsSettings,
    ServiceSettings,
)
from services.common.errors import ConfigError
from services.notifier.adapters.templates import load_catalog
from services.notifier.domain.core import NotifierPolicy
from services.notifier.domain.delivery import RetryPolicy
from services.notifier.domain.errors import PolicyError
from services.notifier.domain.templates import TemplateCatalog, TemplateError

__all__ = ["DeliverySettings", "GatewaySettings", "NotifierSettings"]

TEMPLATES = Path(__file__).resolve().parent / "templates"


class GatewaySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default: str = "127.0.0.1:50060"
    voice: str = ""
    chat: str = ""
    email: str = ""
    sms: str = ""
    social: str = ""
    #: How the notifier identifies itself to the gateways (token, TLS).
    credentials: GrpcClientSettings = GrpcClientSettings()

    def for_channel(self, channel: str) -> str:
        """The endpoint for a channel name (``ChannelInfo.name``); ``default`` if unset."""
        return str(getattr(self, channel, "") or self.default)


class DeliverySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    deadline_s: float = Field(default=2.0, gt=0)
    base_s: float = Field(default=0.2, gt=0)
    cap_s: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=6, ge=1)
    budget_s: float = Field(default=120.0, gt=0)
    breaker_failures: int = Field(default=5, ge=1)
    breaker_open_s: float = Field(default=10.0, gt=0)
    concurrency: int = Field(default=16, ge=1)

    def retry(self) -> RetryPolicy:
        return RetryPolicy(self.base_s, self.cap_s, self.max_attempts, self.budget_s)


class NotifierSettings(ServiceSettings):
    grpc: GrpcSettings = GrpcSettings(port=50053)
    metrics: MetricsSettings = MetricsSettings(port=9403)
    gateways: GatewaySettings = GatewaySettings()
    delivery: DeliverySettings = DeliverySettings()
    policy: dict[str, Any] = Field(default_factory=dict)
    templates_dir: Path = TEMPLATES

    @model_validator(mode="after")
    def _valid(self) -> NotifierSettings:
        self.notifier_policy()
        self.catalog()
        return self

    def notifier_policy(self) -> NotifierPolicy:
        try:
            return NotifierPolicy.from_dict(self.policy)
        except PolicyError as exc:
            raise ConfigError(f"policy.{exc.reason}") from None

    def catalog(self) -> TemplateCatalog:
        try:
            return load_catalog(self.templates_dir)
        except TemplateError as exc:
            raise ConfigError(f"templates_dir: {exc}") from None
