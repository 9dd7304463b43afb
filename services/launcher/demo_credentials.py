"""Credentials for the local demo profile, made fresh for each ``make run`` (never committed).

A demo is still default-deny: every service verifies JWTs exactly as in production, only
against a key made here. This writes, under the run directory:

- ``identity/jwks.json``: the public key the services trust;
- ``identity/tokens/<person>.jwt``: one token per demo person (mode 0600), the people of
  ``deploy/config/escalation.toml`` as managers of the teams they staff, the people of
  each demo tenant's policy (``deploy/policies/<domain>.toml``'s [escalation]) as
  managers of their teams in that domain only, the operator ``ops`` (every domain: the
  launcher applies the tenants' policies with it), one operator per tenant
  (``ops-<domain>``, that domain only) and the services' own identity (the notifier's
  callers);

The private key lives only in memory: nobody can mint another token after the run starts.
Tests use :class:`DemoIssuer` the same way (``tests/support.py``).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = [
    "AUDIENCES",
    "DEMO_ISSUER",
    "OPERATOR_SUBJECT",
    "SERVICES_SUBJECT",
    "DemoIssuer",
    "DemoPerson",
    "demo_people",
    "tenant_staffing",
    "write_demo_credentials",
    "write_demo_tls",
]

DEMO_ISSUER = "switchboard-demo"
#: One audience per server: a token names the servers it is good for.
AUDIENCES = {
    "router": "switchboard-router",
    "escalation": "switchboard-escalation",
    "notifier": "switchboard-notifier",
    "gateway": "switchboard-gateway",
}
#: The demo operator (every domain): RouterAdmin, PolicyService.
OPERATOR_SUBJECT = "ops"
#: The subject of the services' own token (the notifier calling the gateway).
SERVICES_SUBJECT = "switchboard-services"
#: A demo token lasts the working day of one run.
DEMO_TOKEN_TTL_S = 24 * 3600


@dataclass(frozen=True, slots=True)
class DemoPerson:
    """Someone the demo mints a token for."""

    subject: str
    roles: tuple[str, ...]
    teams: tuple[str, ...] = ()
    domains: tuple[str, ...] = ("*",)
    audiences: tuple[str, ...] = tuple(AUDIENCES.values())


@dataclass
class DemoIssuer:
    """A throwaway signing key (P-256, ES256) and the tokens it signs."""

    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    kid: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    issuer: str = DEMO_ISSUER

    def jwks(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "ES256"}]}

    def mint(
        self,
        subject: str,
        *,
        audience: str | Iterable[str],
        roles: Iterable[str],
        teams: Iterable[str] = (),
        domains: Iterable[str] = ("*",),
        ttl_s: float = DEMO_TOKEN_TTL_S,
        now: float | None = None,
        **extra: Any,
    ) -> str:
        issued = int(time.time() if now is None else now)
        claims: dict[str, Any] = {
            "sub": subject,
            "iss": self.issuer,
            "aud": audience if isinstance(audience, str) else list(audience),
            "iat": issued,
            "exp": issued + int(ttl_s),
            "roles": list(roles),
            "teams": list(teams),
            "domains": list(domains),
            **extra,
        }
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": self.kid})


def escalation_staffing(config: Path) -> dict[str, frozenset[str]]:
    """Person -> the teams the escalation policy in ``config`` lets them see."""
    from services.escalation.settings import EscalationSettings  # the launcher's only use

    policy = EscalationSettings.from_env({}, config_file=config).policy()
    return {person: policy.teams_visible_to(person) for person in policy.people()}


def tenant_staffing(policies: Iterable[Any]) -> dict[str, dict[str, frozenset[str]]]:
    """Domain -> person -> teams, from each demo tenant's policy document (objects with
    ``domain`` and ``document``, e.g. :class:`services.launcher.policies.DemoPolicy`);
    a document without [escalation] names nobody. An invalid one is refused later, by
    PolicyService, naming the field; here it names nobody either."""
    from services.policy.validation import InvalidPolicy, parse_document

    staffing: dict[str, dict[str, frozenset[str]]] = {}
    for policy in policies:
        try:
            escalation = parse_document(policy.document).escalation
        except InvalidPolicy:
            continue
        if escalation is not None:
            staffing[policy.domain] = {
                person: escalation.teams_visible_to(person) for person in escalation.people()
            }
    return staffing


def demo_people(
    staffing: Mapping[str, Iterable[str]],
    tenants: Mapping[str, Mapping[str, Iterable[str]]] | None = None,
) -> list[DemoPerson]:
    """``staffing``: person -> the teams whose escalations they see (``"*"``: all), in
    every domain; ``tenants``: domain -> person -> teams, in that domain only (a person
    in both sees the union, in every domain)."""
    teams: dict[str, set[str]] = {p: set(t) for p, t in staffing.items()}
    domains: dict[str, set[str]] = {p: {"*"} for p in staffing}
    for domain, people in (tenants or {}).items():
        for person, visible in people.items():
            teams.setdefault(person, set()).update(visible)
            domains.setdefault(person, set()).add(domain)
    result = [
        DemoPerson(
            person,
            ("manager",),
            tuple(sorted(teams[person])),
            ("*",) if "*" in domains[person] else tuple(sorted(domains[person])),
            audiences=(AUDIENCES["escalation"],),
        )
        for person in sorted(teams)
    ]
    result.append(DemoPerson(OPERATOR_SUBJECT, ("operator",), audiences=(AUDIENCES["router"],)))
    result += [
        DemoPerson(
            f"{OPERATOR_SUBJECT}-{domain}",
            ("operator",),
            domains=(domain,),
            audiences=(AUDIENCES["router"],),
        )
        for domain in sorted(tenants or {})
    ]
    result.append(
        DemoPerson(
            SERVICES_SUBJECT,
            ("service",),
            audiences=(AUDIENCES["notifier"], AUDIENCES["gateway"]),
        )
    )
    return result


def write_demo_credentials(
    directory: Path, people: Iterable[DemoPerson], issuer: DemoIssuer | None = None
) -> Path:
    """Write ``jwks.json`` and one token file per person; return the JWKS path."""
    issuer = issuer or DemoIssuer()
    tokens = directory / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    jwks = directory / "jwks.json"
    jwks.write_text(json.dumps(issuer.jwks(), indent=2) + "\n", encoding="utf-8")
    for person in people:
        token = issuer.mint(
            person.subject,
            audience=person.audiences,
            roles=person.roles,
            teams=person.teams,
            domains=person.domains,
        )
        path = tokens / f"{person.subject}.jwt"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(token + "\n")
    return jwks


def write_demo_tls(directory: Path, hosts: Iterable[str]) -> Path:
    """A throwaway CA (``ca.pem``) and a server certificate and key per host
    (``<host>.pem``/``<host>.key``, valid for the host, localhost and 127.0.0.1), for a
    containerised demo where services reach each other over a network: TLS there too."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("switchboard-demo-ca"))
        .issuer_name(name("switchboard-demo-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for host in hosts:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(host))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName(host),
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        (directory / f"{host}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        write_key(directory / f"{host}.key", key)
    return directory / "ca.pem"


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m services.launcher.demo_credentials --out DIR [--tls-for HOST ...]``:
    what ``make run`` makes, for a containerised demo (deploy/compose.yaml)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--escalation-config", type=Path, default=None)
    parser.add_argument("--tls-for", nargs="*", default=[], help="hosts to make certificates for")
    args = parser.parse_args(argv)
    config = (
        args.escalation_config
        or Path(__file__).resolve().parents[2] / "deploy" / "config" / "escalation.toml"
    )
    from services.launcher.policies import demo_policies

    tenants = tenant_staffing(demo_policies())
    write_demo_credentials(args.out, demo_people(escalation_staffing(config), tenants))
    if args.tls_for:
        write_demo_tls(args.out / "tls", args.tls_for)
    print(f"demo credentials in {args.out}")


if __name__ == "__main__":
    main()
