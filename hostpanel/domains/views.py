"""``/.well-known/hostpanel/<token>``: the HTTP ownership proof, reached through the edge proxy."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseNotFound
from django.views.decorators.http import require_GET

from hostpanel.domains import services


@require_GET
def well_known(request: HttpRequest, token: str) -> HttpResponse:
    """The proof for a pending domain's token (text/plain), else 404 saying nothing."""
    answer = services.well_known_answer(token)
    if answer is None:
        return HttpResponseNotFound("not found\n", content_type="text/plain")
    response = HttpResponse(answer, content_type="text/plain")
    response["Cache-Control"] = "no-store"
    return response
