"""Which hostnames an app answers at; the edge proxy's routing table is built from these.

An app that declares an ``http_port`` gets ``<app>-<tenant>.<HOSTPANEL_APPS_DOMAIN>``.
"""

from __future__ import annotations

from django.conf import settings

from hostpanel.deployments.models import App


def apps_domain() -> str:
    """The domain under which every app gets its automatic hostname (``localhost`` by default)."""
    return str(settings.HOSTPANEL_APPS_DOMAIN).strip(".").lower()


def auto_hostname(app: App) -> str | None:
    """``<app>-<tenant>.<apps domain>`` for an app with an HTTP port, else None."""
    release = app.current_release
    if release is None or release.http_port is None:
        return None
    return f"{app.name}-{app.tenant.slug}.{apps_domain()}"


def app_hostnames(app: App) -> list[str]:
    """Every hostname the edge proxy routes to ``app``."""
    auto = auto_hostname(app)
    return [auto] if auto else []
