"""Caller identity for gRPC: a bearer token checked by a server interceptor, or an mTLS
client certificate.

The interceptor rejects a call without a valid identity (UNAUTHENTICATED) before any
servicer runs; servicers read the identity with :func:`caller_identity` and decide
authorization themselves (PERMISSION_DENIED), because what a caller may see is domain
knowledge (a manager sees only their teams).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import Any

import grpc

__all__ = ["BearerTokenInterceptor", "caller_identity"]

_CALLER: ContextVar[str] = ContextVar("switchboard_caller", default="")
_PUBLIC_METHODS = frozenset(
    {
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    }
)


def _metadata(details: grpc.HandlerCallDetails) -> dict[str, str]:
    return {
        key.lower(): value if isinstance(value, str) else value.decode()
        for key, value in (details.invocation_metadata or ())
    }


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Maps ``authorization: Bearer <token>`` to a configured identity, or refuses the call.

    With mTLS, a verified client certificate's common name is accepted as the identity
    when it is one of ``identities``' values.
    """

    def __init__(self, tokens: Mapping[str, str]) -> None:
        self._tokens = dict(tokens)
        self._known = frozenset(tokens.values())

    def _identity_for(self, token: str) -> str | None:
        for known, identity in self._tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                return identity
        return None

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        if handler_call_details.method in _PUBLIC_METHODS:
            return await continuation(handler_call_details)
        header = _metadata(handler_call_details).get("authorization", "")
        scheme, _, token = header.partition(" ")
        identity = self._identity_for(token.strip()) if scheme.lower() == "bearer" else None
        handler = await continuation(handler_call_details)
        return _with_identity(handler, identity, self._known)


def _with_identity(handler: Any, identity: str | None, known: frozenset[str]) -> Any:
    """Wrap the servicer so it sees the identity, or abort UNAUTHENTICATED without one.

    Each aio RPC runs in its own task, so a ContextVar set here is the caller's alone.
    """

    async def resolve(context: Any) -> None:
        who = identity or _certificate_identity(context, known)
        if who is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or unknown credentials")
        _CALLER.set(who or "")

    if handler is None:
        return None
    if handler.unary_unary is not None:
        inner_unary = handler.unary_unary

        async def unary(request: Any, context: Any) -> Any:
            await resolve(context)
            return await inner_unary(request, context)

        return grpc.unary_unary_rpc_method_handler(
            unary, handler.request_deserializer, handler.response_serializer
        )
    if handler.unary_stream is not None:
        inner_stream = handler.unary_stream

        async def stream(request: Any, context: Any) -> Any:
            await resolve(context)
            async for item in inner_stream(request, context):
                yield item

        return grpc.unary_stream_rpc_method_handler(
            stream, handler.request_deserializer, handler.response_serializer
        )
    return handler


def _certificate_identity(context: Any, known: frozenset[str]) -> str | None:
    auth = context.auth_context()
    for name in auth.get("x509_common_name", []):
        who = name.decode() if isinstance(name, bytes) else str(name)
        if who in known:
            return who
    return None


def caller_identity() -> str:
    """The authenticated caller of the current call (set by :class:`BearerTokenInterceptor`)."""
    return _CALLER.get()
