"""The domain and TLS settings in one place (defaults for settings another part may not define yet)."""

from __future__ import annotations

from django.conf import settings

from hostpanel.domains.tls import TLSConfig


def proxy_http_port() -> int:
    return int(getattr(settings, "HOSTPANEL_PROXY_HTTP_PORT", 8080))


def proxy_https_port() -> int:
    return int(getattr(settings, "HOSTPANEL_PROXY_HTTPS_PORT", 8443))


def tls_config() -> TLSConfig:
    return TLSConfig(
        mode=str(getattr(settings, "HOSTPANEL_TLS", "internal")).strip().lower(),
        apps_domain=str(settings.HOSTPANEL_APPS_DOMAIN).strip(".").lower(),
        http_port=proxy_http_port(),
        https_port=proxy_https_port(),
        acme_email=str(getattr(settings, "HOSTPANEL_ACME_EMAIL", "")),
    )


def nameservers() -> list[str]:
    """``host:port`` of the DNS servers the ownership checks ask (empty: the system's)."""
    return list(getattr(settings, "HOSTPANEL_DOMAINS_NAMESERVERS", []))


def check_timeout() -> float:
    return float(getattr(settings, "HOSTPANEL_DOMAINS_CHECK_TIMEOUT", 5.0))


def extra_proxy_addresses() -> list[str]:
    """Public addresses of the proxy beyond the hosts' own (a load balancer, NAT)."""
    return list(getattr(settings, "HOSTPANEL_EDGE_ADDRESSES", []))


def max_domains_per_tenant() -> int:
    return int(getattr(settings, "HOSTPANEL_DOMAINS_PER_TENANT", 100))
