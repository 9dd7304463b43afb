"""The router's configuration: the shared service settings plus the routing policy.

The ``[routing]`` table of ``deploy/config/router.toml`` is validated into a
:class:`RoutingPolicy` at start; an invalid policy fails naming the field, e.g.
``routing.queues.billing-en.offer_timeout_s: must be > 0``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from services.common.config import GrpcSettings, MetricsSettings, ServiceSettings
from services.common.errors import ConfigError
from services.router.domain import PolicyError, RoutingPolicy

__all__ = ["RouterSettings"]


class RouterSettings(ServiceSettings):
    """Everything ``python -m services.router`` needs."""

    grpc: GrpcSettings = GrpcSettings(port=50051)
    metrics: MetricsSettings = MetricsSettings(port=9401)
    routing: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _policy_is_valid(self) -> RouterSettings:
        self.policy()
        return self

    def policy(self) -> RoutingPolicy:
        try:
            return RoutingPolicy.from_dict(self.routing)
        except PolicyError as exc:
            raise ConfigError(f"routing.{exc.reason}") from None
