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
    assert issuer(good) == {
        "module": "acme",
        "ca": "https://acme-v02.api.letsencrypt.org/directory",
        "email": "ops@x.io",
    }
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
