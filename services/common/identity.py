"""Who is calling: a verified JWT bearer token or an mTLS client certificate, for every
gRPC server.

Default deny. :class:`IdentityInterceptor` refuses every call (UNAUTHENTICATED) that does
not carry a verified identity before any servicer runs, unary and streaming alike; the
health service is the only public one (probes), while reflection (grpcurl's ``list`` and
``describe``) answers any identified caller, whatever their role. It also refuses a request
with a field past its bound (INVALID_ARGUMENT), so no servicer sees an unbounded input.
A servicer then asks :func:`current_caller` and decides what that caller may see: a missing role is
PERMISSION_DENIED, while something outside the caller's scope (another team's
escalation, another domain's queue) is answered NOT_FOUND, so ids cannot be probed.

The rules are here and pure (:class:`Authenticator`); the interceptor only moves
metadata and certificate names in and a status out.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import grpc
import jwt

from services.common.config import GrpcSettings, IdentitySettings
from services.common.contract import within_bounds
from services.common.errors import ConfigError, RejectedEvent

__all__ = [
    "ALL",
    "PUBLIC_METHODS",
    "Authenticator",
    "Caller",
    "IdentityInterceptor",
    "JwtVerifier",
    "Role",
    "Unauthenticated",
    "authenticator_from",
    "calling_as",
    "current_caller",
]

#: Scope wildcard: every team, or every domain.
ALL = "*"
#: Longest bearer token read; anything longer is refused unparsed.
MAX_TOKEN_BYTES = 8 * 1024
#: Most entries in a token's roles, teams or domains, and the longest entry.
MAX_SCOPE_ENTRIES = 256
MAX_NAME_CHARS = 128
#: The only methods that answer without an identity.
PUBLIC_METHODS = frozenset(
    {
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
    }
)


class Role(StrEnum):
    """What a caller may do; scope (teams, domains) says on what."""

    #: Escalations of their teams: list, watch, acknowledge, resolve.
    MANAGER = "manager"
    #: RouterAdmin reads of their domains.
    OPERATOR = "operator"
    #: Machine callers: NotifierService.Notify for their domains; the gateway's callers.
    SERVICE = "service"


class Unauthenticated(Exception):
    """No verified identity; ``reason`` is safe to return to the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Caller:
    """A verified identity with its roles and scope."""

    subject: str
    roles: frozenset[Role]
    teams: frozenset[str] = frozenset()
    domains: frozenset[str] = frozenset()
    #: How it was verified: "jwt" or "certificate".
    via: str = "jwt"

    def has(self, role: Role) -> bool:
        return role in self.roles

    def sees_team(self, team: str) -> bool:
        return ALL in self.teams or team in self.teams

    def sees_domain(self, domain: str) -> bool:
        return ALL in self.domains or domain in self.domains


def _names(claims: Mapping[str, Any], claim: str) -> frozenset[str]:
    """A claim that must be a short list of short strings (absent means empty)."""
    value = claims.get(claim, [])
    if isinstance(value, str):
        value = value.split()  # OAuth's space-separated "scope" style
    if not isinstance(value, list) or len(value) > MAX_SCOPE_ENTRIES:
        raise Unauthenticated(f"token claim {claim!r}: expected at most {MAX_SCOPE_ENTRIES} names")
    if not all(isinstance(v, str) and 0 < len(v) <= MAX_NAME_CHARS for v in value):
        raise Unauthenticated(
            f"token claim {claim!r}: every entry must be text of 1-{MAX_NAME_CHARS} characters"
        )
    return frozenset(value)


def caller_from_claims(claims: Mapping[str, Any], via: str = "jwt") -> Caller:
    """The caller a verified token describes. Roles this system does not know grant nothing."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not 0 < len(subject) <= MAX_NAME_CHARS:
        raise Unauthenticated("token has no usable subject ('sub')")
    known = {role.value for role in Role}
    roles = frozenset(Role(name) for name in _names(claims, "roles") if name in known)
    return Caller(subject, roles, _names(claims, "teams"), _names(claims, "domains"), via)


class JwtVerifier:
    """Checks signature, expiry, not-before, audience and (if set) issuer with PyJWT.

    Keys come from a JWKS document: a file read at start, or a URL fetched at start and
    cached (re-fetched for an unknown key id, at most every ``refresh_s``).
    """

    def __init__(
        self,
        *,
        audience: str,
        keys: jwt.PyJWKSet | None = None,
        jwks_url: str | None = None,
        issuer: str | None = None,
        algorithms: Sequence[str] = ("RS256", "ES256", "EdDSA"),
        leeway_s: float = 30.0,
        jwks_ca_file: Path | None = None,
        refresh_s: float = 300.0,
    ) -> None:
        if (keys is None) == (jwks_url is None):
            raise ConfigError("identity.jwt: set exactly one of jwks_file and jwks_url")
        if not audience:
            raise ConfigError("identity.jwt.audience: required (tokens for other services fail)")
        if "none" in {a.lower() for a in algorithms} or any(a.startswith("HS") for a in algorithms):
            raise ConfigError("identity.jwt.algorithms: only asymmetric algorithms are accepted")
        self._keys = keys
        self._client = None
        if jwks_url:
            context = ssl.create_default_context(cafile=str(jwks_ca_file) if jwks_ca_file else None)
            self._client = jwt.PyJWKClient(
                jwks_url, cache_keys=True, lifespan=refresh_s, timeout=10, ssl_context=context
            )
            try:  # at start: a wrong URL or an unreachable provider fails here, named
                self._client.get_jwk_set()
            except jwt.PyJWKClientError as exc:
                raise ConfigError(f"identity.jwt.jwks_url: cannot read {jwks_url}: {exc}") from None
        self.audience = audience
        self.issuer = issuer
        self.algorithms = list(algorithms)
        self.leeway_s = leeway_s

    @classmethod
    def from_jwks_file(cls, path: Path, **options: Any) -> JwtVerifier:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            keys = jwt.PyJWKSet.from_dict(document)
        except OSError as exc:
            raise ConfigError(
                f"identity.jwt.jwks_file: cannot read {path}: {exc.strerror}"
            ) from None
        except (ValueError, jwt.PyJWKSetError) as exc:
            raise ConfigError(f"identity.jwt.jwks_file: {path} is not a JWKS: {exc}") from None
        return cls(keys=keys, **options)

    @property
    def fetches_keys(self) -> bool:
        """Verification may block on the network (call it off the event loop)."""
        return self._client is not None

    def _key_for(self, token: str) -> Any:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise Unauthenticated("malformed bearer token") from None
        kid = header.get("kid")
        if self._client is not None:
            try:
                return self._client.get_signing_key_from_jwt(token).key
            except jwt.PyJWKClientError:
                raise Unauthenticated("token signed with an unknown key") from None
        assert self._keys is not None  # noqa: S101 - one of the two, checked in __init__
        for key in self._keys.keys:
            if kid is None or key.key_id == kid:
                return key.key
        raise Unauthenticated("token signed with an unknown key")

    def verify(self, token: str) -> Caller:
        """The caller the token names, or :class:`Unauthenticated` saying why not."""
        if len(token) > MAX_TOKEN_BYTES:
            raise Unauthenticated(f"bearer token longer than {MAX_TOKEN_BYTES} bytes")
        key = self._key_for(token)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": ["exp", "sub", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated("token is not for this service (audience)") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated("token from an untrusted issuer") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("token not valid yet") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidTokenError:
            raise Unauthenticated("invalid token signature or format") from None
        return caller_from_claims(claims)


@dataclass(frozen=True)
class Authenticator:
    """Turns what a call presents into a :class:`Caller`, or refuses it.

    A bearer token, when present, decides (an invalid one is refused even on an mTLS
    connection: no silent fallback). Otherwise a verified client certificate whose
    common name or subject alternative name is configured names the caller.
    """

    jwt: JwtVerifier | None = None
    certificates: Mapping[str, Caller] | None = None

    def __post_init__(self) -> None:
        if self.jwt is None and not self.certificates:
            raise ConfigError(
                "identity: no way to identify callers (configure identity.jwt and/or "
                "identity.certificates); a server never runs open"
            )

    def authenticate(self, authorization: str | None, certificate_names: Iterable[str]) -> Caller:
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("authorization must be 'Bearer <token>'")
            if self.jwt is None:
                raise Unauthenticated("this server does not accept bearer tokens")
            return self.jwt.verify(token.strip())
        for name in certificate_names:
            caller = (self.certificates or {}).get(name)
            if caller is not None:
                return caller
        raise Unauthenticated("missing or unknown credentials")


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def authenticator_from(identity: IdentitySettings, grpc_settings: GrpcSettings) -> Authenticator:
    """The server's authenticator, or :class:`ConfigError` naming what is missing.

    Production (the default) needs a way to identify callers and TLS; the demo profile
    still identifies every caller but may serve plaintext, and then only on loopback.
    """
    if identity.profile == "demo":
        if grpc_settings.host not in LOOPBACK_HOSTS and grpc_settings.tls_cert_file is None:
            raise ConfigError(
                f"grpc.host: the demo profile serves plaintext only on loopback, not on "
                f"{grpc_settings.host!r} (configure grpc.tls_cert_file or bind 127.0.0.1)"
            )
    elif grpc_settings.tls_cert_file is None:
        raise ConfigError(
            "grpc.tls_cert_file: required (tokens and customer data never cross a network "
            "in plaintext); only identity.profile = 'demo' may serve plaintext on loopback"
        )
    verifier = None
    if identity.jwt is not None:
        options: dict[str, Any] = {
            "audience": identity.jwt.audience,
            "issuer": identity.jwt.issuer,
            "algorithms": identity.jwt.algorithms,
            "leeway_s": identity.jwt.leeway_s,
        }
        if identity.jwt.jwks_file is not None:
            if identity.jwt.jwks_url is not None:
                raise ConfigError("identity.jwt: set exactly one of jwks_file and jwks_url")
            verifier = JwtVerifier.from_jwks_file(identity.jwt.jwks_file, **options)
        else:
            verifier = JwtVerifier(
                jwks_url=identity.jwt.jwks_url, jwks_ca_file=identity.jwt.jwks_ca_file, **options
            )
    certificates = {
        name: Caller(
            name,
            frozenset(Role(role) for role in grant.roles),
            frozenset(grant.teams),
            frozenset(grant.domains),
            "certificate",
        )
        for name, grant in identity.certificates.items()
    }
    return Authenticator(verifier, certificates)


_CALLER: ContextVar[Caller | None] = ContextVar("switchboard_caller", default=None)


def current_caller() -> Caller:
    """The verified caller of the running RPC (set by :class:`IdentityInterceptor`)."""
    caller = _CALLER.get()
    if caller is None:
        raise RuntimeError("no caller: the servicer runs without IdentityInterceptor")
    return caller


@contextmanager
def calling_as(caller: Caller) -> Iterator[Caller]:
    """Run servicer code as ``caller`` without the interceptor (unit tests of servicers)."""
    token = _CALLER.set(caller)
    try:
        yield caller
    finally:
        _CALLER.reset(token)


def _authorization(details: grpc.HandlerCallDetails) -> str | None:
    for key, value in details.invocation_metadata or ():
        if key.lower() == "authorization":
            return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return None


def _certificate_names(context: Any) -> list[str]:
    auth = context.auth_context()
    names = [*auth.get("x509_common_name", []), *auth.get("x509_subject_alternative_name", [])]
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


class IdentityInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Verifies the caller of every non-public method before its servicer runs."""

    def __init__(self, authenticator: Authenticator) -> None:
        self._authenticator = authenticator

    async def _caller(self, authorization: str | None, context: Any) -> Caller:
        verifier = self._authenticator.jwt
        names = _certificate_names(context)
        try:
            if authorization and verifier is not None and verifier.fetches_keys:
                return await asyncio.to_thread(
                    self._authenticator.authenticate, authorization, names
                )
            return self._authenticator.authenticate(authorization, names)
        except Unauthenticated as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, exc.reason)
            raise  # abort raises; this line only satisfies the type checker

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method in PUBLIC_METHODS:
            return handler
        authorization = _authorization(handler_call_details)
        return _guarded(handler, lambda context: self._caller(authorization, context))


async def _bounded(request: Any, context: Any) -> None:
    """INVALID_ARGUMENT naming the first field of ``request`` past its bound (the same
    bounds as the services' Kafka inputs: :func:`services.common.contract.within_bounds`)."""
    try:
        within_bounds(request)
    except RejectedEvent as exc:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.reason)


async def _each_bounded(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
    async for request in requests:
        await _bounded(request, context)
        yield request


def _guarded(handler: Any, identify: Callable[[Any], Awaitable[Caller]]) -> Any:
    """The same handler, identifying its caller first and refusing a request with a field
    past its bound; all four RPC shapes (streamed requests are checked one by one).

    Each aio RPC runs in its own task, so the ContextVar set here is that call's alone.
    """
    serializers = (handler.request_deserializer, handler.response_serializer)
    if handler.unary_unary is not None:
        unary_unary = handler.unary_unary

        async def on_unary_unary(request: Any, context: Any) -> Any:
            _CALLER.set(await identify(context))
            await _bounded(request, context)
            return await unary_unary(request, context)

        return grpc.unary_unary_rpc_method_handler(on_unary_unary, *serializers)
    if handler.unary_stream is not None:
        unary_stream = handler.unary_stream

        async def on_unary_stream(request: Any, context: Any) -> AsyncIterator[Any]:
            _CALLER.set(await identify(context))
            await _bounded(request, context)
            async for item in unary_stream(request, context):
                yield item

        return grpc.unary_stream_rpc_method_handler(on_unary_stream, *serializers)
    if handler.stream_unary is not None:
        stream_unary = handler.stream_unary

        async def on_stream_unary(requests: Any, context: Any) -> Any:
            _CALLER.set(await identify(context))
            return await stream_unary(_each_bounded(requests, context), context)

        return grpc.stream_unary_rpc_method_handler(on_stream_unary, *serializers)
    if handler.stream_stream is not None:
        stream_stream = handler.stream_stream

        async def on_stream_stream(requests: Any, context: Any) -> AsyncIterator[Any]:
            _CALLER.set(await identify(context))
            async for item in stream_stream(_each_bounded(requests, context), context):
                yield item

        return grpc.stream_stream_rpc_method_handler(on_stream_stream, *serializers)
    raise ConfigError("identity: a gRPC method of unknown shape cannot be guarded")
