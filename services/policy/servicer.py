"""PolicyService: operators validate, apply, inspect and roll back a domain's policy.

Hosted by the router (any replica answers for any domain). Only callers with the
``operator`` role get anything, and only for the domains their token's scope names
(PERMISSION_DENIED otherwise, whether the domain has a policy or not: the answer says
nothing about other tenants). The identity interceptor has already refused a request
with a field past its bound (document 64 KiB, comment 500 characters, domain 128).

Statuses: INVALID_ARGUMENT names the field (nothing written); FAILED_PRECONDITION: the
change was based on another version than the current one; NOT_FOUND: a rollback to a
version the history does not hold; ABORTED: another apply of the domain took over at the
same moment (nothing of this one applied); UNAVAILABLE: the view or Kafka cannot answer
now; RESOURCE_EXHAUSTED: the view left domains out past its bounds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

import grpc
from switchboard.v1 import policy_pb2, policy_pb2_grpc

from services.common.clock import Clock, SystemClock
from services.common.identity import Caller, Role, current_caller
from services.policy.mapping import version_to_proto
from services.policy.store import PolicyStore, StoreUnavailable, WriteAborted
from services.policy.validation import InvalidPolicy, parse_document
from services.policy.versions import (
    BookIncomplete,
    History,
    PolicyRefused,
    UnknownVersion,
    apply_version,
    rollback_version,
)

__all__ = ["PolicyServicer"]


async def _abort(context: Any, code: grpc.StatusCode, details: str) -> NoReturn:
    await context.abort(code, details)
    raise AssertionError("unreachable: abort raises")


class PolicyServicer(policy_pb2_grpc.PolicyServiceServicer):
    """Thin: the rules are in :mod:`services.policy.versions` and ``.validation``."""

    def __init__(self, store: PolicyStore, clock: Clock | None = None) -> None:
        self._store = store
        self._clock = clock or SystemClock()

    async def _operator(self, context: Any, domain: str | None = None) -> Caller:
        caller = current_caller()
        if not caller.has(Role.OPERATOR):
            await _abort(context, grpc.StatusCode.PERMISSION_DENIED, "policies are for 'operator'")
        if domain is not None:
            if not domain:
                await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "domain: required")
            if not caller.sees_domain(domain):
                await _abort(
                    context,
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"domain {domain!r} is not in your token's domains",
                )
        return caller

    def _count(self, outcome: str) -> None:
        if self._store.metrics is not None:
            self._store.metrics.changes.labels(outcome).inc()

    async def ValidatePolicy(
        self, request: policy_pb2.ValidatePolicyRequest, context: Any
    ) -> policy_pb2.ValidatePolicyResponse:
        await self._operator(context)
        try:
            parse_document(request.document)
        except InvalidPolicy as exc:
            return policy_pb2.ValidatePolicyResponse(problems=exc.problems)
        return policy_pb2.ValidatePolicyResponse()

    async def ApplyPolicy(
        self, request: policy_pb2.ApplyPolicyRequest, context: Any
    ) -> policy_pb2.ApplyPolicyResponse:
        caller = await self._operator(context, request.domain)
        await self._check(request.document, request.comment, context)
        now = self._clock.now()

        def change(history: History | None) -> History:
            return apply_version(
                history,
                domain=request.domain,
                expected_version=request.expected_version,
                document=request.document,
                author=caller.subject,
                comment=request.comment,
                now=now,
            )

        written = await self._write(request.domain, change, now, context)
        return policy_pb2.ApplyPolicyResponse(applied=version_to_proto(written.current))

    async def RollbackPolicy(
        self, request: policy_pb2.RollbackPolicyRequest, context: Any
    ) -> policy_pb2.RollbackPolicyResponse:
        caller = await self._operator(context, request.domain)
        if request.to_version == 0:
            await _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "to_version: required (versions start at 1; to go back to the configured "
                "default, apply its tables as a new version)",
            )
        await self._check(None, request.comment, context)
        now = self._clock.now()

        def change(history: History | None) -> History:
            new = rollback_version(
                history,
                domain=request.domain,
                to_version=request.to_version,
                expected_version=request.expected_version,
                author=caller.subject,
                comment=request.comment,
                now=now,
            )
            # The parsers may have changed since that version was applied.
            parse_document(new.current.document)
            return new

        written = await self._write(request.domain, change, now, context)
        return policy_pb2.RollbackPolicyResponse(applied=version_to_proto(written.current))

    async def GetPolicyHistory(
        self, request: policy_pb2.GetPolicyHistoryRequest, context: Any
    ) -> policy_pb2.GetPolicyHistoryResponse:
        await self._operator(context, request.domain)
        try:
            history = await self._store.history(request.domain)
        except StoreUnavailable as exc:
            await _abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))
        except BookIncomplete as exc:
            await _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        versions = () if history is None else history.versions()
        return policy_pb2.GetPolicyHistoryResponse(versions=[version_to_proto(v) for v in versions])

    async def _check(self, document: str | None, comment: str, context: Any) -> None:
        """INVALID_ARGUMENT naming the field: no comment, or a document the services'
        parsers refuse."""
        if not comment.strip():
            await _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "comment: required (why, in your words: it is kept with the version)",
            )
        if document is not None:
            try:
                parse_document(document)
            except InvalidPolicy as exc:
                self._count("invalid")
                await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "; ".join(exc.problems))

    async def _write(
        self,
        domain: str,
        change: Callable[[History | None], History],
        now: float,
        context: Any,
    ) -> History:
        failure: tuple[grpc.StatusCode, str, str]
        try:
            written = await self._store.write(domain, change, now)
        except InvalidPolicy as exc:
            failure = (grpc.StatusCode.INVALID_ARGUMENT, "invalid", "; ".join(exc.problems))
        except UnknownVersion as exc:
            failure = (grpc.StatusCode.NOT_FOUND, "not_found", exc.reason)
        except PolicyRefused as exc:  # VersionConflict
            failure = (grpc.StatusCode.FAILED_PRECONDITION, "conflict", exc.reason)
        except WriteAborted as exc:
            failure = (grpc.StatusCode.ABORTED, "aborted", str(exc))
        except StoreUnavailable as exc:
            failure = (grpc.StatusCode.UNAVAILABLE, "unavailable", str(exc))
        except BookIncomplete as exc:
            failure = (grpc.StatusCode.RESOURCE_EXHAUSTED, "unavailable", str(exc))
        else:
            self._count("applied")
            return written
        code, outcome, details = failure
        self._count(outcome)
        await _abort(context, code, details)
