"""``{% app_domains app %}``: the app page's web addresses (automatic hostname, custom domains)."""

from __future__ import annotations

from typing import Any

from django import template

from hostpanel.deployments.models import App
from hostpanel.domains import conf, services
from hostpanel.domains.hostnames import auto_hostname
from hostpanel.domains.models import Domain
from hostpanel.domains.names import display

register = template.Library()

CERT_CLASS = {
    Domain.CertState.ISSUED: "state-running",
    Domain.CertState.ON_DEMAND: "state-running",
    Domain.CertState.PENDING: "state-pending",
    Domain.CertState.NONE: "state-stopped",
    Domain.CertState.EXPIRED: "state-failed",
    Domain.CertState.ERROR: "state-failed",
}


def url_of(name: str, scheme: str) -> str:
    port = conf.proxy_http_port() if scheme == "http" else conf.proxy_https_port()
    default = 80 if scheme == "http" else 443
    return f"{scheme}://{name}{'' if port == default else f':{port}'}/"


@register.inclusion_tag("domains/app_domains.html", takes_context=True)
def app_domains(context: dict[str, Any], app: App) -> dict[str, Any]:
    auto = auto_hostname(app)
    rows = [
        {
            "domain": d,
            "display": display(d.name),
            "steps": None if d.verified else services.instructions(d),
            "cert_class": CERT_CLASS.get(d.cert_state, "state-stopped"),
            "url": url_of(d.name, "https") if d.verified and not d.is_wildcard else "",
        }
        for d in Domain.objects.filter(app=app).order_by("name")
    ]
    return {
        "app": app,
        "tenant": app.tenant,
        "can_act": context.get("can_act", False),
        "csrf_token": context.get("csrf_token"),
        "auto": auto,
        "auto_http": url_of(auto, "http") if auto else "",
        "auto_https": url_of(auto, "https") if auto else "",
        "rows": rows,
    }
