"""The escalation service's configuration: shared settings (``[identity]`` says how
managers are identified: JWTs from the identity provider, or mTLS) and the
``[escalation]`` policy, which says which teams each person sees."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.common.config import GrpcSettings, MetricsSettings, ServiceSettings
from services.common.errors import ConfigError
from services.escalation.domain import EscalationPolicy, PolicyError

__all__ = ["CommandSettings", "EscalationSettings", "ViewSettings", "WatchSettings"]


class WatchSettings(BaseModel):
    """Bounds on the managers' Watch streams."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Streams open at once; one more is refused with RESOURCE_EXHAUSTED.
    max_streams: int = Field(default=100, ge=1, le=10_000)
    #: Changes a stream may fall behind before it is ended (RESOURCE_EXHAUSTED).
    queue_size: int = Field(default=1_000, ge=1, le=100_000)


class ViewSettings(BaseModel):
    """This instance's read view of every domain's escalations (Watch and ListOpen)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Escalations held (open and resolved, until their case is forgotten), about 2 KB
    #: each; one more makes the view incomplete and every call fails RESOURCE_EXHAUSTED
    #: naming this setting.
    max_escalations: int = Field(default=100_000, ge=1, le=10_000_000)
    #: How long a call waits for the view to be loaded at start before UNAVAILABLE.
    load_timeout_s: float = Field(default=20.0, gt=0, le=600)


class CommandSettings(BaseModel):
    """Acknowledge, AddNote and Resolve, sent to the instance owning the domain."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Longest a call waits for the owner's committed answer (less if the caller's own
    #: deadline is sooner); the owner drops a command it reads later than that.
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    #: Commands waiting for an answer at once; one more is refused RESOURCE_EXHAUSTED.
    max_in_flight: int = Field(default=1_000, ge=1, le=100_000)


class EscalationSettings(ServiceSettings):
    grpc: GrpcSettings = GrpcSettings(port=50052)
    metrics: MetricsSettings = MetricsSettings(port=9402)
    watch: WatchSettings = WatchSettings()
    view: ViewSettings = ViewSettings()
    commands: CommandSettings = CommandSettings()
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
