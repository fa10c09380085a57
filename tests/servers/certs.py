"""Certificates made at test time for the secured servers (Kafka SASL_SSL, PostgreSQL with TLS,
HTTPS): a private certificate authority, and a server certificate it signs for 127.0.0.1 and
localhost. Nothing is committed: each session makes its own, in a temp dir.

`other_ca` is a second authority that signed nothing the servers use: a client that trusts only
it must refuse the servers ("untrusted certificate").
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 2
HOSTS = ("localhost",)
ADDRESSES = ("127.0.0.1",)


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: `ca` (the authority clients trust), `cert` and `key` (the server's),
    `chain` (key then certificate in one file, as Kafka's PEM keystore wants them) and
    `other_ca` (an authority that signed nothing here)."""

    ca: Path
    cert: Path
    key: Path
    chain: Path
    other_ca: Path
    key_password: str | None


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


_CA_USAGE = x509.KeyUsage(
    digital_signature=True, key_cert_sign=True, crl_sign=True,
    content_commitment=False, key_encipherment=False, data_encipherment=False,
    key_agreement=False, encipher_only=False, decipher_only=False,
)  # fmt: skip


def _authority(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _server_cert(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    names: list[x509.GeneralName] = [x509.DNSName(h) for h in HOSTS]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ADDRESSES]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def make_tls(directory: Path, key_password: str | None = None) -> TlsFiles:
    """Write a fresh authority, a server certificate for 127.0.0.1/localhost signed by it, and
    an unrelated authority into `directory`. The server key is PKCS#8, encrypted with
    `key_password` when one is given (Kafka's PEM keystore wants it so)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _authority("tickpipe test CA")
    _, other_cert = _authority("some other CA")
    key, cert = _server_cert(ca_key, ca_cert)
    encryption: serialization.KeySerializationEncryption = serialization.NoEncryption()
    if key_password is not None:
        encryption = serialization.BestAvailableEncryption(key_password.encode())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    files = TlsFiles(
        ca=directory / "ca.pem",
        cert=directory / "server.pem",
        key=directory / "server.key",
        chain=directory / "server-chain.pem",
        other_ca=directory / "other-ca.pem",
        key_password=key_password,
    )
    files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.other_ca.write_bytes(other_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert_pem)
    files.key.write_bytes(key_pem)
    files.key.chmod(0o600)
    files.chain.write_bytes(key_pem + cert_pem)
    files.chain.chmod(0o600)
    return files
