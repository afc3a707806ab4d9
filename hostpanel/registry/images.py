"""Pushed images become images the panel deploys (hostpanel.images.Image records).

A tenant's ``<slug>/<name>:<tag>`` becomes that tenant's image; an admin's
``library/<name>:<tag>`` a base image for all. The record has no archive: a
host agent finds it with :func:`hostpanel.registry.services.pull_source` and
pulls it from HOSTPANEL_REGISTRY_URL with :func:`~hostpanel.registry.services.agent_pull_token`.
"""

from __future__ import annotations

from django.db import transaction

from hostpanel.audit.services import Actor
from hostpanel.images.models import Image
from hostpanel.images.services import forget_archive
from hostpanel.tenants.models import Tenant
from hostpanel.tenants.signals import apps_using


def publish_image(actor: Actor, tenant: Tenant | None, repository: str, tag: str) -> Image | None:
    """Make ``repository:tag`` deployable by its tenant (or by all under library/).

    A reference held by another tenant or a base image is left alone (None):
    the registry never takes over another owner's image name.
    """
    reference = f"{repository}:{tag}"
    tenant_id = tenant.pk if tenant is not None else None
    with transaction.atomic():
        image = Image.objects.select_for_update().filter(reference=reference).first()
        if image is not None and image.tenant_id != tenant_id:
            return None
        old_archive = image.archive if image is not None else ""
        image, _ = Image.objects.update_or_create(
            reference=reference,
            defaults={
                "tenant": tenant,
                "archive": "",
                "size": 0,
                "sha256": "",
                "created_by": actor.user if getattr(actor.user, "pk", None) else None,
            },
        )
    if old_archive:
        forget_archive(old_archive)  # an uploaded archive of the same name is replaced by the push
    return image


def unpublish_images(repository: str, tags: list[str]) -> None:
    """Forget the panel images of deleted tags, except those an app still runs."""
    for tag in tags:
        reference = f"{repository}:{tag}"
        if apps_using("image", reference):
            continue
        Image.objects.filter(reference=reference, archive="").delete()
