"""The installation's Docker API certificate authority, and the certificates it signs.

One CA per installation (its key and certificate under ``HOSTPANEL_DOCKER_API_DIR``, mode
0600, made once). It signs each member's client certificate (the subject carries the user,
the tenant and the role: ``CN=<user>, O=<tenant>, OU=<role>``) and the door's own server
certificate. Pure ``cryptography``: no Django, so it is unit-tested on its own.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_KEY = "ca-key.pem"
CA_CERT = "ca.pem"
SERVER_KEY = "server-key.pem"
SERVER_CERT = "server.pem"


@dataclass(frozen=True)
class Authority:
    """The CA's key and certificate."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def cert_pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()


@dataclass(frozen=True)
class Issued:
    """A freshly signed certificate and its private key (shown once, never stored by the panel)."""

    cert: x509.Certificate
    key_pem: str

    @property
    def cert_pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def serial(self) -> str:
        return serial_text(self.cert)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.cert)


def serial_text(cert: x509.Certificate) -> str:
    """A certificate's serial number as lowercase hex (how the panel stores it)."""
    return format(cert.serial_number, "x")


def fingerprint(cert: x509.Certificate) -> str:
    """The SHA-256 fingerprint of a certificate, lowercase hex."""
    return cert.fingerprint(hashes.SHA256()).hex()


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file of mode 0600 (FileExistsError if another process made it first)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def load_or_create(directory: Path, common_name: str = "HostPanel Docker API CA") -> Authority:
    """The CA in ``directory``, made (key and certificate, both 0600) the first time."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_path, cert_path = directory / CA_KEY, directory / CA_CERT
    if not key_path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        try:  # the certificate first: a key without one is never read
            _write_private(cert_path.with_suffix(".tmp"), cert.public_bytes(serialization.Encoding.PEM))
            _write_private(key_path, _key_pem(key))
            os.replace(cert_path.with_suffix(".tmp"), cert_path)
        except FileExistsError:
            pass  # another process made it at the same moment: read theirs
    key_loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key_loaded, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path}: not an EC private key")
    return Authority(key=key_loaded, cert=x509.load_pem_x509_certificate(cert_path.read_bytes()))


def _leaf(
    ca: Authority,
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    days: int,
    san: list[x509.GeneralName] | None = None,
) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    return Issued(cert=cert, key_pem=_key_pem(key).decode())


def issue_client(ca: Authority, *, username: str, tenant: str, role: str, days: int) -> Issued:
    """A client certificate for ``username`` in ``tenant`` with ``role`` (CN, O and OU of its subject)."""
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, username),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, tenant),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
        ]
    )
    return _leaf(ca, subject, ExtendedKeyUsageOID.CLIENT_AUTH, days)


def subject_fields(cert: x509.Certificate) -> dict[str, str]:
    """``{"user", "tenant", "role"}`` as the certificate's subject states them."""
    names = {
        "user": NameOID.COMMON_NAME,
        "tenant": NameOID.ORGANIZATION_NAME,
        "role": NameOID.ORGANIZATIONAL_UNIT_NAME,
    }
    out = {}
    for key, oid in names.items():
        attrs = cert.subject.get_attributes_for_oid(oid)
        out[key] = str(attrs[0].value) if attrs else ""
    return out


def server_certificate(
    ca: Authority, directory: Path, names: list[str], days: int = 825
) -> tuple[Path, Path]:
    """(cert, key) paths of the door's server certificate for ``names`` (DNS names or addresses),
    signed by ``ca``; made anew on every call (each server start), mode 0600."""
    san: list[x509.GeneralName] = []
    for name in dict.fromkeys(n for n in names if n):
        try:
            san.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            san.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else "hostpanel")])
    issued = _leaf(ca, subject, ExtendedKeyUsageOID.SERVER_AUTH, days, san)
    cert_path, key_path = directory / SERVER_CERT, directory / SERVER_KEY
    for path, data in ((cert_path, issued.cert_pem.encode()), (key_path, issued.key_pem.encode())):
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        _write_private(tmp, data)
        os.replace(tmp, path)
    return cert_path, key_path
