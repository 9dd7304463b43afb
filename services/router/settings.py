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
from services.router.metric_labels import MAX_LABELLED, LabelPolicy

__all__ = ["RouterMetricsSettings", "RouterSettings"]


class RouterMetricsSettings(MetricsSettings):
    """The Prometheus endpoint, and which domains label their own series (the rest are
    "other"; see :mod:`services.router.metric_labels`)."""

    #: Domains that always have their own ``domain`` label.
    domains: list[str] = Field(default_factory=list, max_length=MAX_LABELLED)
    #: Up to this many more: the first domains whose traffic reaches ``top_domains_min_events``.
    top_domains: int = Field(default=10, ge=0, le=MAX_LABELLED)
    top_domains_min_events: int = Field(default=100, ge=1)

    @model_validator(mode="after")
    def _labels_are_valid(self) -> RouterMetricsSettings:
        self.label_policy()
        return self

    def label_policy(self) -> LabelPolicy:
        """The rule's settings (a ValueError names the bad field)."""
        return LabelPolicy(frozenset(self.domains), self.top_domains, self.top_domains_min_events)


class RouterSettings(ServiceSettings):
    """Everything ``python -m services.router`` needs."""

    grpc: GrpcSettings = GrpcSettings(port=50051)
    metrics: RouterMetricsSettings = RouterMetricsSettings(port=9401)
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
