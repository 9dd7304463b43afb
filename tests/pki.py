"""Certificates for tests: a key, a certificate (CA, server or client) and PEM files."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

Key = ec.EllipticCurvePrivateKey


def new_key() -> Key:
    return ec.generate_private_key(ec.SECP256R1())


def certificate(
    subject: str,
    key: Key,
    issuer: tuple[x509.Name, Key] | None = None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    """Signed by ``issuer`` (its name and key), or self-signed; a server's names localhost
    and 127.0.0.1."""
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer or (name, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def write_pem(directory: Path, name: str, cert: x509.Certificate, key: Key) -> tuple[Path, Path]:
    """``<name>.pem`` and ``<name>.key`` (PKCS#8, unencrypted) in ``directory``."""
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def load_ca(ca_file: Path) -> tuple[x509.Name, Key]:
    """A CA's name and key from its PEM and the ``ca.key`` beside it (the local broker's)."""
    key = serialization.load_pem_private_key((ca_file.parent / "ca.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return x509.load_pem_x509_certificate(ca_file.read_bytes()).subject, key
