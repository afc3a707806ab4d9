"""What certificate the edge proxy presents for a name: a TLS handshake with SNI, read, never trusted.

No Django here. The handshake goes to our own proxy only (an address of ours, never the name's DNS).
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from hostpanel.domains.names import covers


@dataclass(frozen=True)
class Presented:
    """The certificate the proxy presented for a name."""

    names: list[str]
    issuer: str
    not_after: datetime

    def covers(self, name: str) -> bool:
        return any(n == name or covers(n, name) for n in self.names)

    def expired(self, now: datetime | None = None) -> bool:
        return self.not_after <= (now or datetime.now(UTC))


class NoCertificate(Exception):
    """The proxy did not complete a handshake for the name (no certificate, or refused to issue)."""


class NoProxy(Exception):
    """Nothing accepts connections there (no proxy runs at that address)."""


def presented(address: str, port: int, server_name: str, timeout: float) -> Presented:
    """Handshake with ``address:port`` asking for ``server_name`` and read the certificate it presents."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # we read what is presented; whether it is right is checked below
    try:
        raw = socket.create_connection((address, port), timeout=timeout)
    except OSError as exc:
        raise NoProxy(f"no proxy answers at {address}:{port}: {exc}") from exc
    try:
        with raw, context.wrap_socket(raw, server_hostname=server_name) as tls:
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as exc:
        raise NoCertificate(f"no certificate from {address}:{port} for {server_name}: {exc}") from exc
    if not der:
        raise NoCertificate(f"{address}:{port} presented no certificate for {server_name}")
    return parse(der)


def parse(der: bytes) -> Presented:
    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
        names = [str(n).lower() for n in san.get_values_for_type(x509.DNSName)]  # type: ignore[attr-defined]
    except x509.ExtensionNotFound:
        names = []
    return Presented(
        names=names, issuer=cert.issuer.rfc4514_string()[:255], not_after=cert.not_valid_after_utc
    )
