"""The endpoint Caddy asks before it gets a certificate on demand (``GET /edge/ask?domain=NAME``).

200 only for a hostname one of our apps answers at; 404 for anything else, so nobody can
make us request certificates for names we do not serve. Anonymous (Caddy calls it) and it
tells nothing that the proxy itself does not.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from hostpanel.edge.table import is_served

MAX_NAME = 253


@require_GET
def ask(request: HttpRequest) -> HttpResponse:
    domain = request.GET.get("domain", "")
    if not domain:
        return HttpResponse("give ?domain=<hostname>\n", status=400, content_type="text/plain")
    if len(domain) > MAX_NAME + 1 or not is_served(domain):
        return HttpResponse("not a hostname served here\n", status=404, content_type="text/plain")
    return HttpResponse("ok\n", content_type="text/plain")
