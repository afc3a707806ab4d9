"""Project-level views: the health check."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from hostpanel.health import health


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """200 with the health document, or 503 when the database is unreachable."""
    doc, healthy = health()
    return JsonResponse(doc, status=200 if healthy else 503)
