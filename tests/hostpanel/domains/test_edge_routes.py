"""The edge's base config carries the domains' routes: HTTPS redirect on plain HTTP only, one issuer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hostpanel.domains.tls import BadTLSMode, caddy_issuer
from hostpanel.edge.caddy import EdgeSettings, base_config


def servers(tls: str, https_port: int = 8443) -> dict[str, Any]:
    config = base_config(
        EdgeSettings(Path("/run/a.sock"), Path("/var/caddy"), 5353, https_port=https_port, tls=tls)
    )
    return dict(config["apps"]["http"]["servers"])


@pytest.mark.parametrize(
    ("tls", "issuer_dir"),
    [("internal", "local"), ("acme", "acme-v02.api.letsencrypt.org-directory")],
)
def test_plain_http_redirects_once_the_issuers_certificate_exists(tls: str, issuer_dir: str) -> None:
    found = servers(tls)
    http_ids = [r.get("@id") for r in found["hostpanel-http"]["routes"]]
    assert http_ids == ["hostpanel-panel", "hostpanel-https-redirect", "hostpanel-apps"]
    assert "hostpanel-https-redirect" not in [r.get("@id") for r in found["hostpanel-https"]["routes"]]
    redirect = found["hostpanel-http"]["routes"][1]
    matcher = redirect["match"][0]
    assert matcher["file"]["root"] == f"/var/caddy/certificates/{issuer_dir}"
    assert {"path": ["/.well-known/acme-challenge/*", "/.well-known/hostpanel/*"]} in matcher["not"]
    location = redirect["handle"][0]["headers"]["Location"]
    assert location == ["https://{http.request.host}:8443{http.request.uri}"]


def test_on_443_the_redirect_names_no_port() -> None:
    redirect = servers("internal", https_port=443)["hostpanel-http"]["routes"][1]
    assert redirect["handle"][0]["headers"]["Location"] == ["https://{http.request.host}{http.request.uri}"]


def test_one_issuer_builder() -> None:
    assert caddy_issuer("internal") == {"module": "internal"}
    assert caddy_issuer("acme", "ops@example.com")["email"] == "ops@example.com"
    with pytest.raises(BadTLSMode):
        caddy_issuer("none")
