"""Who may call: JWTs verified against a JWKS (signature, expiry, audience, issuer) and
mTLS certificate names, turned into a caller with roles and scope; everything else refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from services.common.config import GrpcSettings, IdentitySettings
from services.common.errors import ConfigError
from services.common.identity import (
    MAX_SCOPE_ENTRIES,
    MAX_TOKEN_BYTES,
    Authenticator,
    Caller,
    JwtVerifier,
    Role,
    Unauthenticated,
    authenticator_from,
)
from services.launcher.demo_credentials import demo_people, write_demo_credentials, write_demo_tls

AUDIENCE = "switchboard-escalation"
ISSUER = "https://idp.example"
KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())


def jwks(tmp_path: Path) -> Path:
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(KEY.public_key()))
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [{**public, "kid": "k1", "use": "sig", "alg": "ES256"}]}))
    return path


def token(key: Any = KEY, kid: str = "k1", **claims: Any) -> str:
    now = int(time.time())
    body = {
        "sub": "piotr",
        "aud": AUDIENCE,
        "iss": ISSUER,
        "iat": now,
        "exp": now + 300,
        "roles": ["manager"],
        "teams": ["polish"],
    }
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key, algorithm="ES256", headers={"kid": kid})


@pytest.fixture
def verifier(tmp_path: Path) -> JwtVerifier:
    return JwtVerifier.from_jwks_file(jwks(tmp_path), audience=AUDIENCE, issuer=ISSUER, leeway_s=0)


def refused(verifier: JwtVerifier, presented: str) -> str:
    with pytest.raises(Unauthenticated) as caught:
        verifier.verify(presented)
    return caught.value.reason


def test_a_valid_token_names_the_caller_with_roles_and_scope(verifier: JwtVerifier) -> None:
    caller = verifier.verify(token(domains=["acme"], roles=["manager", "operator", "janitor"]))
    assert caller == Caller(
        "piotr",
        frozenset({Role.MANAGER, Role.OPERATOR}),
        frozenset({"polish"}),
        frozenset({"acme"}),
        "jwt",
    )
    assert caller.sees_team("polish")
    assert not caller.sees_team("english")
    assert caller.sees_domain("acme")
    assert not caller.sees_domain("globex")


def test_the_wildcard_scope_sees_everything(verifier: JwtVerifier) -> None:
    caller = verifier.verify(token(teams=["*"], domains="*"))
    assert caller.sees_team("any")
    assert caller.sees_domain("any")


@pytest.mark.parametrize(
    ("presented", "reason"),
    [
        (lambda: token(exp=int(time.time()) - 60), "token expired"),
        (lambda: token(aud="switchboard-router"), "not for this service"),
        (lambda: token(iss="https://evil.example"), "untrusted issuer"),
        (lambda: token(nbf=int(time.time()) + 600), "not valid yet"),
        (lambda: token(key=OTHER_KEY), "signature"),  # forged: right kid, wrong key
        (lambda: token(kid="k2"), "unknown key"),
        (lambda: token(exp=None), "'exp'"),
        (lambda: token(sub=None), "'sub'"),
        (lambda: token(sub=""), "subject"),
        (lambda: token(teams=["x"] * (MAX_SCOPE_ENTRIES + 1)), "teams"),
        (lambda: token(teams=["x" * 500]), "teams"),
        (lambda: token(roles=[1]), "roles"),
        (lambda: "not.a.jwt", "malformed"),
        (lambda: "x" * (MAX_TOKEN_BYTES + 1), "longer than"),
    ],
)
def test_a_bad_token_is_refused_saying_why(
    verifier: JwtVerifier, presented: Any, reason: str
) -> None:
    assert reason in refused(verifier, presented())


def test_an_unsigned_token_is_refused(verifier: JwtVerifier) -> None:
    claims = {"sub": "mallory", "aud": AUDIENCE, "iss": ISSUER, "exp": int(time.time()) + 60}
    unsigned = jwt.encode(claims, key=None, algorithm="none", headers={"kid": "k1"})
    assert refused(verifier, unsigned)


def test_a_shared_secret_token_keyed_with_the_public_key_is_refused(
    verifier: JwtVerifier,
) -> None:
    """The classic RS/HS confusion: an HS256 token whose secret is the published key."""
    pem = KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    claims = {"sub": "mallory", "aud": AUDIENCE, "iss": ISSUER, "exp": int(time.time()) + 60}

    def part(data: dict[str, Any]) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=")

    signing_input = part({"alg": "HS256", "typ": "JWT", "kid": "k1"}) + b"." + part(claims)
    signature = base64.urlsafe_b64encode(
        hmac.new(pem, signing_input, hashlib.sha256).digest()
    ).rstrip(b"=")
    assert refused(verifier, (signing_input + b"." + signature).decode())


@pytest.mark.parametrize("algorithms", [["none"], ["HS256"], ["ES256", "HS512"]])
def test_symmetric_or_no_algorithms_fail_at_start(tmp_path: Path, algorithms: list[str]) -> None:
    with pytest.raises(ConfigError, match="algorithms"):
        JwtVerifier.from_jwks_file(jwks(tmp_path), audience=AUDIENCE, algorithms=algorithms)


def test_a_missing_or_broken_jwks_file_fails_at_start_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"identity\.jwt\.jwks_file"):
        JwtVerifier.from_jwks_file(tmp_path / "absent.json", audience=AUDIENCE)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match=r"identity\.jwt\.jwks_file"):
        JwtVerifier.from_jwks_file(tmp_path / "bad.json", audience=AUDIENCE)


def test_an_audience_is_required(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="audience"):
        JwtVerifier.from_jwks_file(jwks(tmp_path), audience="")


# --- the authenticator: token or certificate, never neither ----------------------------

GATEWAY = Caller("notifier", frozenset({Role.SERVICE}), domains=frozenset({"*"}), via="certificate")


def test_an_authenticator_with_nothing_configured_refuses_to_exist() -> None:
    with pytest.raises(ConfigError, match="never runs open"):
        Authenticator()


def test_a_configured_certificate_name_identifies_the_caller() -> None:
    authenticator = Authenticator(certificates={"notifier.switchboard.svc": GATEWAY})
    assert authenticator.authenticate(None, ["unknown", "notifier.switchboard.svc"]) == GATEWAY


def test_an_unknown_certificate_or_nothing_at_all_is_refused() -> None:
    authenticator = Authenticator(certificates={"notifier.switchboard.svc": GATEWAY})
    for names in ([], ["someone-else"]):
        with pytest.raises(Unauthenticated, match="missing or unknown credentials"):
            authenticator.authenticate(None, names)


def test_a_bad_token_on_a_certified_connection_does_not_fall_back(verifier: JwtVerifier) -> None:
    authenticator = Authenticator(jwt=verifier, certificates={"cli": GATEWAY})
    with pytest.raises(Unauthenticated, match="expired"):
        authenticator.authenticate(f"Bearer {token(exp=int(time.time()) - 60)}", ["cli"])
    assert authenticator.authenticate(f"Bearer {token()}", ["cli"]).subject == "piotr"


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer ", "token-without-scheme"])
def test_anything_but_a_bearer_token_is_refused(verifier: JwtVerifier, header: str) -> None:
    with pytest.raises(Unauthenticated, match="Bearer"):
        Authenticator(jwt=verifier).authenticate(header, [])


def test_a_server_without_jwt_refuses_bearer_tokens() -> None:
    with pytest.raises(Unauthenticated, match="does not accept bearer"):
        Authenticator(certificates={"cli": GATEWAY}).authenticate(f"Bearer {token()}", [])


# --- configuration: default deny, the demo profile's one relaxation ----------------------


def settings(**identity: Any) -> tuple[IdentitySettings, GrpcSettings]:
    grpc = identity.pop("grpc", {})
    return IdentitySettings.model_validate(identity), GrpcSettings.model_validate(grpc)


def test_a_server_with_no_identity_configuration_refuses_to_start(tmp_path: Path) -> None:
    cert = {"tls_cert_file": tmp_path / "c.pem", "tls_key_file": tmp_path / "k.pem"}
    with pytest.raises(ConfigError, match="never runs open"):
        authenticator_from(*settings(grpc=cert))


def test_production_refuses_plaintext_grpc(tmp_path: Path) -> None:
    jwks_file = jwks(tmp_path)
    with pytest.raises(ConfigError, match=r"grpc\.tls_cert_file"):
        authenticator_from(*settings(jwt={"jwks_file": jwks_file, "audience": AUDIENCE}))


def test_the_demo_profile_serves_plaintext_only_on_loopback(tmp_path: Path) -> None:
    jwt_settings = {"jwks_file": jwks(tmp_path), "audience": AUDIENCE, "issuer": ISSUER}
    demo = authenticator_from(*settings(profile="demo", jwt=jwt_settings))
    assert demo.authenticate(f"Bearer {token()}", []).subject == "piotr"
    with pytest.raises(ConfigError, match=r"grpc\.host"):
        authenticator_from(*settings(profile="demo", jwt=jwt_settings, grpc={"host": "0.0.0.0"}))


def test_certificate_grants_come_from_configuration(tmp_path: Path) -> None:
    cert = {"tls_cert_file": tmp_path / "c.pem", "tls_key_file": tmp_path / "k.pem"}
    authenticator = authenticator_from(
        *settings(grpc=cert, certificates={"router": {"roles": ["service"], "domains": ["acme"]}})
    )
    caller = authenticator.authenticate(None, ["router"])
    assert caller.has(Role.SERVICE)
    assert caller.sees_domain("acme")
    assert not caller.sees_domain("globex")
    assert caller.via == "certificate"


def test_a_plain_http_jwks_url_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="jwks_url"):
        settings(jwt={"jwks_url": "http://idp.example/jwks", "audience": AUDIENCE})


def test_demo_credentials_verify_like_any_other_token(tmp_path: Path) -> None:
    people = demo_people({"piotr": ["polish"], "hugo": ["*"]})
    jwks_file = write_demo_credentials(tmp_path / "identity", people)
    verifier = JwtVerifier.from_jwks_file(
        jwks_file, audience="switchboard-escalation", issuer="switchboard-demo"
    )
    piotr = (tmp_path / "identity" / "tokens" / "piotr.jwt").read_text().strip()
    assert verifier.verify(piotr).teams == frozenset({"polish"})
    assert (tmp_path / "identity" / "tokens" / "piotr.jwt").stat().st_mode & 0o077 == 0
    operator = (tmp_path / "identity" / "tokens" / "ops.jwt").read_text().strip()
    with pytest.raises(Unauthenticated, match="audience"):
        verifier.verify(operator)  # the operator's token is for the router only


# --- keys from a JWKS URL: a real HTTPS server on loopback ---------------------------------


@pytest.fixture
def jwks_server(tmp_path: Path) -> Iterator[str]:
    """The test issuer's JWKS over HTTPS (a demo CA's certificate for localhost)."""
    write_demo_tls(tmp_path / "tls", ["localhost"])
    body = jwks(tmp_path).read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "tls" / "localhost.pem", tmp_path / "tls" / "localhost.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://localhost:{server.server_address[1]}/.well-known/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


def test_keys_fetched_from_a_jwks_url_verify_tokens(jwks_server: str, tmp_path: Path) -> None:
    verifier = JwtVerifier(
        jwks_url=jwks_server,
        jwks_ca_file=tmp_path / "tls" / "ca.pem",
        audience=AUDIENCE,
        issuer=ISSUER,
        leeway_s=0,
    )
    assert verifier.fetches_keys
    assert verifier.verify(token()).subject == "piotr"
    assert "signature" in refused(verifier, token(key=OTHER_KEY))


def test_an_untrusted_or_unreachable_jwks_url_fails_at_start(jwks_server: str) -> None:
    with pytest.raises(ConfigError, match=r"identity\.jwt\.jwks_url: cannot read"):
        JwtVerifier(jwks_url=jwks_server, audience=AUDIENCE)  # the system CAs do not trust it
    with pytest.raises(ConfigError, match=r"identity\.jwt\.jwks_url: cannot read"):
        JwtVerifier(jwks_url="https://127.0.0.1:9/jwks.json", audience=AUDIENCE)
