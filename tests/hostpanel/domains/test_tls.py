"""HOSTPANEL_TLS: internal (default) or acme; a mode this host cannot do stops the panel saying why."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from hostpanel.domains.conf import tls_config
from hostpanel.domains.tls import BadTLSMode, TLSConfig, issuer, issuer_storage_key, problems


def config(**kw: Any) -> TLSConfig:
    values: dict[str, Any] = {
        "mode": "internal",
        "apps_domain": "localhost",
        "http_port": 8080,
        "https_port": 8443,
    }
    return TLSConfig(**(values | kw))


def test_internal_is_the_default_and_works_anywhere(settings: Any) -> None:
    assert tls_config().mode == "internal"
    assert problems(config()) == []
    assert issuer(config()) == {"module": "internal"}
    assert issuer_storage_key(config()) == "local"


def test_acme_needs_a_public_domain_and_ports_80_and_443() -> None:
    found = problems(config(mode="acme"))
    assert len(found) == 2
    assert "HOSTPANEL_APPS_DOMAIN" in found[0] and "'localhost'" in found[0]
    assert "80 and 443" in found[1] and "now 8080 and 8443" in found[1]
    assert problems(config(mode="acme", apps_domain="apps.example.test", http_port=80, https_port=443))
    good = config(
        mode="acme",
        apps_domain="apps.hosting.example.com",
        http_port=80,
        https_port=443,
        acme_email="ops@x.io",
    )
    assert problems(good) == []
    assert issuer(good) == {"module": "acme", "email": "ops@x.io"}  # Let's Encrypt: Caddy's default
    assert issuer_storage_key(good) == "acme-v02.api.letsencrypt.org-directory"
    with pytest.raises(BadTLSMode, match="public HOSTPANEL_APPS_DOMAIN"):
        issuer(config(mode="acme"))


def test_an_unknown_mode_is_named_with_the_choices() -> None:
    assert problems(config(mode="selfsigned")) == [
        "HOSTPANEL_TLS='selfsigned' is not a TLS mode; use one of internal, acme"
    ]


def test_manage_py_check_refuses_a_mode_the_host_cannot_do(settings: Any) -> None:
    settings.HOSTPANEL_TLS = "acme"
    with pytest.raises(SystemCheckError, match="HOSTPANEL_TLS=acme needs a public HOSTPANEL_APPS_DOMAIN"):
        call_command("check")
    settings.HOSTPANEL_TLS = "internal"
    call_command("check")


@pytest.mark.django_db
def test_admins_read_the_tls_mode_and_a_mode_the_host_cannot_do_is_a_400(
    api: Any, admin_user: Any, tenant: Any, member: Any, settings: Any
) -> None:
    settings.HOSTPANEL_CADDY_DATA = "/srv/caddy"
    r = api(admin_user).get("/api/v1/tls/")
    assert r.status_code == 200
    assert r.json() == {
        "mode": "internal",
        "issuer": {"module": "internal"},
        "root_certificate": "/srv/caddy/pki/authorities/local/root.crt",
        "problems": [],
    }
    r = api(admin_user).post("/api/v1/tls/check/", {"mode": "acme"}, format="json")
    assert r.status_code == 400
    assert "HOSTPANEL_TLS=acme cannot work here" in r.json()["error"]["message"]
    assert len(r.json()["error"]["details"]["problems"]) == 2
    r = api(admin_user).post("/api/v1/tls/check/", {"mode": "letsencrypt"}, format="json")
    assert r.status_code == 400 and "use one of internal, acme" in r.json()["error"]["message"]
    assert api(admin_user).post("/api/v1/tls/check/", {"mode": "internal"}, format="json").status_code == 200
    assert api(member(tenant, "owner")).get("/api/v1/tls/").status_code == 403
    assert api(None).get("/api/v1/tls/").status_code == 401
    settings.HOSTPANEL_TLS = "acme"
    settings.HOSTPANEL_APPS_DOMAIN = "apps.hosting.example.com"
    settings.HOSTPANEL_PROXY_HTTP_PORT, settings.HOSTPANEL_PROXY_HTTPS_PORT = 80, 443
    body = api(admin_user).get("/api/v1/tls/").json()
    assert body["mode"] == "acme" and body["issuer"]["module"] == "acme" and body["root_certificate"] is None
