"""Which hostnames an app answers at; the edge proxy's routing table and ``ask`` are built from these
(``hostpanel.edge.table``: one owner per name, the exact name before a wildcard).

An app that declares an ``http_port`` gets ``<app>-<tenant>.<HOSTPANEL_APPS_DOMAIN>``, plus each of
its custom domains once verified (``*.example.com`` entries cover exactly one more label).
"""

from __future__ import annotations

from django.conf import settings

from hostpanel.deployments.models import App
from hostpanel.deployments.services import hostname_label
from hostpanel.domains.models import Domain


def apps_domain() -> str:
    """The domain under which every app gets its automatic hostname (``localhost`` by default)."""
    return str(settings.HOSTPANEL_APPS_DOMAIN).strip(".").lower()


def serves_http(app: App) -> bool:
    release = app.current_release
    return release is not None and release.http_port is not None


def auto_hostname(app: App) -> str | None:
    """``<app>-<tenant>.<apps domain>`` for an app with an HTTP port, else None."""
    if not serves_http(app):
        return None
    return f"{hostname_label(app.name, app.tenant.slug)}.{apps_domain()}"


def custom_hostnames(app: App) -> list[str]:
    """The app's verified custom domains (none while it declares no HTTP port)."""
    if not serves_http(app):
        return []
    return list(
        Domain.objects.filter(app=app, verified_at__isnull=False)
        .order_by("name")
        .values_list("name", flat=True)
    )


def app_hostnames(app: App) -> list[str]:
    """Every hostname the edge proxy routes to ``app``."""
    auto = auto_hostname(app)
    return ([auto] if auto else []) + custom_hostnames(app)
