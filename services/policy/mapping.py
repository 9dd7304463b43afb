"""``policy.proto`` messages to and from :mod:`services.policy.versions`' dataclasses."""

from __future__ import annotations

from switchboard.v1 import policy_pb2

from services.common.codec import set_timestamp
from services.policy.versions import History, Version

__all__ = ["history_from_proto", "history_to_proto", "version_from_proto", "version_to_proto"]


def version_to_proto(version: Version) -> policy_pb2.PolicyVersion:
    proto = policy_pb2.PolicyVersion(
        version=version.version,
        author=version.author,
        comment=version.comment,
        document=version.document,
        restores_version=version.restores_version,
    )
    set_timestamp(proto.applied_at, version.applied_at)
    return proto


def version_from_proto(proto: policy_pb2.PolicyVersion) -> Version:
    return Version(
        version=proto.version,
        author=proto.author,
        applied_at=proto.applied_at.seconds + proto.applied_at.nanos / 1e9,
        comment=proto.comment,
        document=proto.document,
        restores_version=proto.restores_version,
    )


def history_to_proto(history: History) -> policy_pb2.PolicyChanged:
    return policy_pb2.PolicyChanged(
        current=version_to_proto(history.current),
        earlier=[version_to_proto(v) for v in history.earlier],
    )


def history_from_proto(proto: policy_pb2.PolicyChanged) -> History:
    """The record's history; ValueError if it names no version (``current`` unset or 0)."""
    if not proto.HasField("current") or proto.current.version == 0:
        raise ValueError("policy_changed.current: no version (0 is never a version)")
    return History(
        version_from_proto(proto.current),
        tuple(version_from_proto(v) for v in proto.earlier),
    )
