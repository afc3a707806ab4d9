"""Routes the edge's base Caddy config includes for domains (pure JSON builders, no Django).

It goes in the plain-HTTP server's routes after the panel's ``/.well-known/hostpanel/*`` route
and BEFORE the catch-all proxy route; it does not change when domains or certificates change
(Caddy 2.6 closes websockets on every config change).

:func:`https_redirect_route`: plain HTTP answers 308 to HTTPS for a name once Caddy holds a
certificate for it (a ``file`` matcher on Caddy's certificate storage, read at request time).
"""

from __future__ import annotations

from typing import Any

REDIRECT_ROUTE_ID = "hostpanel-https-redirect"
PROOF_PATH = "/.well-known/hostpanel/*"
ACME_PATH = "/.well-known/acme-challenge/*"


def https_redirect_route(certificates_dir: str, https_port: int) -> dict[str, Any]:
    """308 to ``https://<host>[:port]<uri>`` when ``<certificates_dir>/<host>/<host>.crt`` exists.

    ``certificates_dir`` is Caddy's ``<storage root>/certificates/<issuer key>`` (see tls.issuer_storage_key).
    """
    port = "" if https_port == 443 else f":{https_port}"
    return {
        "@id": REDIRECT_ROUTE_ID,
        "match": [
            {
                "file": {
                    "root": certificates_dir,
                    "try_files": ["/{http.request.host}/{http.request.host}.crt"],
                },
                "not": [{"path": [ACME_PATH, PROOF_PATH]}],
            }
        ],
        "handle": [
            {
                "handler": "static_response",
                "status_code": 308,
                "headers": {"Location": [f"https://{{http.request.host}}{port}{{http.request.uri}}"]},
            }
        ],
        "terminal": True,
    }
