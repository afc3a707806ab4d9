"""The TLS mode (``HOSTPANEL_TLS``): who issues the edge proxy's certificates, and whether this host can.

- ``internal`` (default; development and tests): Caddy's own CA. Browsers trust it once its root
  (``<caddy data>/caddy/pki/authorities/local/root.crt``) is installed; see README.
- ``acme``: Let's Encrypt, on demand, gated by the panel's ``ask`` endpoint. It needs a public
  apps domain and the proxy on ports 80 and 443 (where Let's Encrypt connects to validate).

No Django here: callers pass the settings' values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hostpanel.domains.names import is_under

MODES = ("internal", "acme")
LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LOCAL_NAMES = ("localhost", "local", "test", "example", "invalid", "internal", "home.arpa")


class BadTLSMode(ValueError):
    """The TLS mode asked for is unknown or cannot work on this host (the message says why)."""


@dataclass(frozen=True)
class TLSConfig:
    mode: str
    apps_domain: str
    http_port: int
    https_port: int
    acme_email: str = ""
    acme_ca: str = LETS_ENCRYPT


def problems(config: TLSConfig) -> list[str]:
    """Why ``config`` cannot work here (empty when it can)."""
    if config.mode not in MODES:
        return [f"HOSTPANEL_TLS={config.mode!r} is not a TLS mode; use one of {', '.join(MODES)}"]
    found: list[str] = []
    if config.mode == "acme":
        if any(is_under(config.apps_domain, local) for local in LOCAL_NAMES):
            found.append(
                f"HOSTPANEL_TLS=acme needs a public HOSTPANEL_APPS_DOMAIN; {config.apps_domain!r} cannot "
                "get a Let's Encrypt certificate (use HOSTPANEL_TLS=internal for development)"
            )
        if (config.http_port, config.https_port) != (80, 443):
            found.append(
                "HOSTPANEL_TLS=acme needs the proxy on ports 80 and 443 (Let's Encrypt validates there); "
                f"set HOSTPANEL_PROXY_HTTP_PORT=80 and HOSTPANEL_PROXY_HTTPS_PORT=443 "
                f"(now {config.http_port} and {config.https_port})"
            )
    return found


def require_workable(config: TLSConfig) -> None:
    """BadTLSMode with every reason when ``config`` cannot work on this host."""
    found = problems(config)
    if found:
        raise BadTLSMode("; ".join(found))


def issuer(config: TLSConfig) -> dict[str, Any]:
    """The Caddy issuer object of ``config``; BadTLSMode when this host cannot use it."""
    require_workable(config)
    return caddy_issuer(config.mode, config.acme_email, config.acme_ca)


def caddy_issuer(mode: str, acme_email: str = "", acme_ca: str = LETS_ENCRYPT) -> dict[str, Any]:
    """The Caddy issuer object for the edge's on-demand TLS automation policy."""
    if mode not in MODES:
        raise BadTLSMode(f"HOSTPANEL_TLS={mode!r} is not a TLS mode; use one of {', '.join(MODES)}")
    if mode == "internal":
        return {"module": "internal"}
    acme: dict[str, Any] = {"module": "acme"}  # Caddy's default directory is Let's Encrypt's
    if acme_ca != LETS_ENCRYPT:
        acme["ca"] = acme_ca
    if acme_email:
        acme["email"] = acme_email
    return acme


def issuer_storage_key(config: TLSConfig) -> str:
    """The directory under ``<caddy storage>/certificates/`` where this issuer's certificates live."""
    return storage_key(config.mode, config.acme_ca)


def storage_key(mode: str, acme_ca: str = LETS_ENCRYPT) -> str:
    """``local`` for Caddy's internal CA; the ACME directory URL made a path segment otherwise."""
    if mode == "internal":
        return "local"
    url = acme_ca.split("://", 1)[-1]
    return url.replace("/", "-").replace(":", "-")
