"""Images: the tenant's and the base images, and an upload with live progress."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST

from hostpanel.dashboard.access import page, require_developer, tenant_context
from hostpanel.errors import Forbidden, NotFound, ServiceError
from hostpanel.images import services as images
from hostpanel.images.models import Image


@page
def image_list(request: HttpRequest, slug: str) -> HttpResponse:
    ctx = tenant_context(request, slug)
    context = ctx.template_context() | {
        "images": images.available_images(ctx.actor, ctx.tenant),
        "section": "images",
    }
    return render(request, "dashboard/images.html", context)


@page
@require_POST
def image_upload(request: HttpRequest, slug: str) -> HttpResponse:
    """The upload form posts here through XHR (progress events); the answer says where to poll."""
    ctx = tenant_context(request, slug)
    require_developer(ctx)
    archive = request.FILES.get("archive")
    if archive is None:
        return JsonResponse({"error": "archive: choose a docker-save or OCI archive file"}, status=400)
    try:
        image = images.upload_image(ctx.actor, ctx.tenant, request.POST.get("name", "").strip(), archive)
    except (NotFound, Forbidden):
        raise
    except ServiceError as exc:
        return JsonResponse({"error": exc.message}, status=exc.status)
    return JsonResponse({"reference": image.reference, "status_url": f"/t/{slug}/images/{image.pk}/status/"})


@page
def image_status(request: HttpRequest, slug: str, image_id: int) -> HttpResponse:
    """What became of an upload: stored (sha256, size) and which apps use it (polled by htmx)."""
    ctx = tenant_context(request, slug)
    image = Image.objects.filter(pk=image_id, tenant=ctx.tenant).first()
    if image is None:
        raise NotFound("no such image")
    in_use = ctx.tenant.apps.filter(current_release__image=image.reference).count()
    context = {"image": image, "in_use": in_use, "tenant": ctx.tenant}
    return render(request, "dashboard/_image_status.html", context)
