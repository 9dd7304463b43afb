"""The router's ``[policy_service]`` settings: its PolicyService and its read view of the
``policies`` topic."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PolicyServiceSettings"]


class PolicyServiceSettings(BaseModel):
    """Bounds and waits of the PolicyService (``services/policy``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Longest a call waits for the read view of ``policies`` to load or catch up, and
    #: for its record to be written (then UNAVAILABLE).
    wait_s: float = Field(default=10.0, gt=0, le=300)
    #: Domains the read view holds; a record of one more is left out, and calls about a
    #: domain it does not hold are RESOURCE_EXHAUSTED naming this setting.
    max_domains: int = Field(default=100_000, ge=1, le=10_000_000)
    #: Bytes of records it holds (a record is at most ~800 KB), likewise.
    max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024 * 1024)
