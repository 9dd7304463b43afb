"""The router's configuration: the shared service settings plus the routing policy.

The ``[routing]`` table of ``deploy/config/router.toml`` is validated into a
:class:`RoutingPolicy` at start; an invalid policy fails naming the field, e.g.
``routing.queues.billing-en.offer_timeout_s: must be > 0``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.common.config import GrpcSettings, MetricsSettings, ServiceSettings
from services.common.errors import ConfigError
from services.policy.settings import PolicyServiceSettings
from services.router.domain import PolicyError, RoutingPolicy
from services.router.domain.domains_view import ViewLimits
from services.router.metric_labels import MAX_LABELLED, LabelPolicy

__all__ = ["AdminViewSettings", "RouterMetricsSettings", "RouterSettings"]

#: The router takes whole policy documents (PolicyService, at most 64 KiB each, with a
#: comment): its gRPC requests may be this large unless configured otherwise ...
POLICY_REQUEST_BYTES = 96 * 1024
#: ... and no smaller than this.
MIN_REQUEST_BYTES = 72 * 1024


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


class AdminViewSettings(BaseModel):
    """The read view of every domain that lets any replica answer RouterAdmin
    (``services/router/domain/domains_view.py``): read from the router changelog."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Most domains held; a domain past it is left out and calls needing it are refused.
    max_domains: int = Field(default=100_000, ge=1, le=10_000_000)
    #: Most bytes of stored snapshots held (all domains), likewise.
    max_bytes: int = Field(default=128 * 1024 * 1024, ge=1024 * 1024)
    #: Domains whose rebuilt state is kept between calls (least recently asked out).
    max_cached_cores: int = Field(default=256, ge=1, le=1_000_000)
    #: A changing domain's state is rebuilt for a call at most this often.
    rebuild_after_s: float = Field(default=0.5, ge=0, le=60)
    #: How long a call waits for the view to read the changelog at start (then UNAVAILABLE).
    ready_wait_s: float = Field(default=10.0, gt=0, le=300)

    def limits(self) -> ViewLimits:
        return ViewLimits(
            max_domains=self.max_domains,
            max_bytes=self.max_bytes,
            max_cores=self.max_cached_cores,
            rebuild_after_s=self.rebuild_after_s,
        )


class RouterSettings(ServiceSettings):
    """Everything ``python -m services.router`` needs."""

    grpc: GrpcSettings = GrpcSettings(port=50051, max_request_bytes=POLICY_REQUEST_BYTES)
    metrics: RouterMetricsSettings = RouterMetricsSettings(port=9401)
    routing: dict[str, Any] = Field(default_factory=dict)
    admin_view: AdminViewSettings = AdminViewSettings()
    #: The PolicyService this router hosts and its view of the ``policies`` topic.
    policy_service: PolicyServiceSettings = PolicyServiceSettings()

    @model_validator(mode="before")
    @classmethod
    def _room_for_policy_documents(cls, data: Any) -> Any:
        """A ``[grpc]`` table without ``max_request_bytes`` gets the router's default."""
        if isinstance(data, dict) and isinstance(data.get("grpc"), dict):
            grpc = data["grpc"]
            if "max_request_bytes" not in grpc:
                data = {**data, "grpc": {**grpc, "max_request_bytes": POLICY_REQUEST_BYTES}}
        return data

    @model_validator(mode="after")
    def _takes_policy_documents(self) -> RouterSettings:
        if self.grpc.max_request_bytes < MIN_REQUEST_BYTES:
            raise ValueError(
                f"grpc.max_request_bytes: at least {MIN_REQUEST_BYTES} on the router "
                "(PolicyService takes policy documents of up to 64 KiB)"
            )
        return self

    @model_validator(mode="after")
    def _policy_is_valid(self) -> RouterSettings:
        self.policy()
        return self

    def policy(self) -> RoutingPolicy:
        try:
            return RoutingPolicy.from_dict(self.routing)
        except PolicyError as exc:
            raise ConfigError(f"routing.{exc.reason}") from None
