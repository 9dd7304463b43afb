"""The escalation service's configuration: shared settings, the ``[escalation]`` policy
and the managers' identities (``[identities.tokens]``: bearer token -> person).

Tokens in ``deploy/config/escalation.toml`` are for local development only; production
passes them by env (``SWITCHBOARD_IDENTITIES__TOKENS__<TOKEN>=<person>``) or uses mTLS.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.common.config import GrpcSettings, MetricsSettings, ServiceSettings
from services.common.errors import ConfigError
from services.escalation.domain import EscalationPolicy, PolicyError

__all__ = ["EscalationSettings", "Identities"]


class Identities(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tokens: dict[str, str] = Field(default_factory=dict)


class EscalationSettings(ServiceSettings):
    grpc: GrpcSettings = GrpcSettings(port=50052)
    metrics: MetricsSettings = MetricsSettings(port=9402)
    escalation: dict[str, Any] = Field(default_factory=dict)
    identities: Identities = Identities()

    @model_validator(mode="after")
    def _valid(self) -> EscalationSettings:
        policy = self.policy()
        for token, person in self.identities.tokens.items():
            if not token or not person:
                raise ConfigError("identities.tokens: empty token or person")
            if not policy.teams_visible_to(person):
                raise ConfigError(f"identities.tokens: {person!r} staffs no team and has no access")
        return self

    def policy(self) -> EscalationPolicy:
        try:
            return EscalationPolicy.from_dict(self.escalation, prefix="escalation.")
        except PolicyError as exc:
            raise ConfigError(exc.reason) from None
