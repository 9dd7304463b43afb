"""The escalation service's configuration: shared settings (``[identity]`` says how
managers are identified: JWTs from the identity provider, or mTLS) and the
``[escalation]`` policy, which says which teams each person sees."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from services.common.config import GrpcSettings, MetricsSettings, ServiceSettings
from services.common.errors import ConfigError
from services.escalation.domain import EscalationPolicy, PolicyError

__all__ = ["EscalationSettings"]


class EscalationSettings(ServiceSettings):
    grpc: GrpcSettings = GrpcSettings(port=50052)
    metrics: MetricsSettings = MetricsSettings(port=9402)
    escalation: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _valid(self) -> EscalationSettings:
        self.policy()
        return self

    def policy(self) -> EscalationPolicy:
        try:
            return EscalationPolicy.from_dict(self.escalation, prefix="escalation.")
        except PolicyError as exc:
            raise ConfigError(exc.reason) from None
