"""A domain's policy as an input: the one reading of a ``policies`` record that every
service applies (``policy.proto``'s ``PolicyChanged``), and the refusals they share.

The services read ``policies`` as one more input of their consume loop, in order with
the domain's events. A record is refused (dead-lettered, reason on one line) when it is
not a ``PolicyChanged`` with a domain and a version, when a ``PolicyChanged`` arrives on
another topic, or when its version is not newer than the one the domain runs on
(:func:`stale_reason`). Whether the document's table is valid is each service's parser's
business (its refusal names the field).
"""

from __future__ import annotations

from dataclasses import dataclass

from switchboard.v1.envelope_pb2 import Envelope

from services.common.errors import RejectedEvent

__all__ = ["POLICIES_TOPIC", "PolicyInput", "policy_input", "require_newer", "stale_reason"]

#: The topic's base name (``deploy/topics.toml``).
POLICIES_TOPIC = "policies"


@dataclass(frozen=True, slots=True)
class PolicyInput:
    """The domain's new current version (the earlier ones are the PolicyService's)."""

    domain: str
    version: int
    document: str


def policy_input(envelope: Envelope, topic: str) -> PolicyInput | None:
    """The policy ``envelope`` carries, None when it is no policy record (an event for the
    service's other inputs); :class:`RejectedEvent` for a policy record that cannot be
    applied, or anything else on ``policies``. ``topic`` is the base name it was read from."""
    payload = envelope.WhichOneof("payload")
    on_policies = topic == POLICIES_TOPIC
    if payload != "policy_changed":
        if on_policies:
            what = payload or "no payload"
            raise RejectedEvent(f"{what}: only policy_changed belongs on policies")
        return None
    if not on_policies:
        raise RejectedEvent(f"policy_changed belongs on policies, not {topic}")
    if not envelope.domain or "/" in envelope.domain:
        raise RejectedEvent("envelope.domain is required and must not contain '/'")
    current = envelope.policy_changed.current
    if current.version == 0:
        raise RejectedEvent("policy_changed.current.version: required (0 is the default)")
    return PolicyInput(envelope.domain, current.version, current.document)


def stale_reason(domain: str, version: int, applied: int) -> str:
    """Why ``version`` is refused for a domain running on ``applied``."""
    return (
        f"policy version {version} of domain {domain!r} is stale: version {applied} is "
        "already applied"
    )


def require_newer(changed: PolicyInput, applied: int) -> None:
    """Refuse ``changed`` (:class:`RejectedEvent`) unless it is newer than ``applied``."""
    if changed.version <= applied:
        raise RejectedEvent(stale_reason(changed.domain, changed.version, applied))
