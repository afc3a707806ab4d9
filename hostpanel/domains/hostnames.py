"""Which hostnames an app answers at; the edge proxy's routing table and ``ask`` are built from these.

An app that declares an ``http_port`` gets ``<app>-<tenant>.<HOSTPANEL_APPS_DOMAIN>``, plus each of
its custom domains once verified (``*.example.com`` entries cover exactly one more label).
"""

from __future__ import annotations

from django.conf import settings
from django.db.models import Q

from hostpanel.deployments.models import App
from hostpanel.domains.models import Domain
from hostpanel.domains.names import WILDCARD_PREFIX, host_of


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
    return f"{app.name}-{app.tenant.slug}.{apps_domain()}"


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


def app_for_hostname(raw: str) -> App | None:
    """The app a request for ``raw`` (a Host header or SNI name) goes to, or None (nobody's)."""
    name = host_of(raw)
    if name is None:
        return None
    app = _auto_app(name) or _domain_app(name)
    return app if app is not None and serves_http(app) else None


def hostname_is_served(raw: str) -> bool:
    """Whether we route ``raw`` (the ``ask`` endpoint: may the proxy get a certificate for it)."""
    return app_for_hostname(raw) is not None


def _auto_app(name: str) -> App | None:
    suffix = "." + apps_domain()
    label = name[: -len(suffix)] if name.endswith(suffix) else ""
    if not label or "." in label:
        return None
    # "<app>-<tenant>": both may contain '-', so try every split (an app name has at most 40 chars).
    splits = [(label[:i], label[i + 1 :]) for i, ch in enumerate(label) if ch == "-"]
    if not splits:
        return None
    query = Q()
    for app_name, slug in splits:
        query |= Q(name=app_name, tenant__slug=slug)
    matches = [
        a
        for a in App.objects.filter(query).select_related("tenant", "current_release")
        if f"{a.name}-{a.tenant.slug}" == label
    ]
    return matches[0] if len(matches) == 1 else None


def _domain_app(name: str) -> App | None:
    parent = name.partition(".")[2]
    candidates = [name, WILDCARD_PREFIX + parent] if parent.count(".") >= 1 else [name]
    found = {
        d.name: d
        for d in Domain.objects.filter(name__in=candidates, verified_at__isnull=False).select_related(
            "app__tenant", "app__current_release"
        )
    }
    domain = found.get(name) or found.get(WILDCARD_PREFIX + parent)  # the exact name wins
    return domain.app if domain is not None else None
