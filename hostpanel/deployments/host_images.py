"""Uploaded image archives a host may fetch: those of the images its placed replicas run.

A tenant's uploaded image (``images.services.upload_image``) is a file on the panel's disk. A host
agent has neither the database nor the panel's disk: its desired document names the archives of its replicas'
images (``archives``: reference -> sha256 and size, :func:`document_archives`) and it fetches one
with ``GET /internal/v1/images/archive?reference=...`` (deployments/internal.py), which serves only
:func:`host_archive`: an archive of an image a replica placed on the calling host runs, its tenant's
own or a base image. Anything else is "no such archive", whether it exists or not.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q

from hostpanel.deployments.models import Replica
from hostpanel.hosts.models import Host
from hostpanel.images.models import Image
from hostpanel.images.services import normalize


def document_archives(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The uploaded archives of the images the document's ``entries`` run (reference -> its
    ``sha256`` and ``size``), each only if the entry's tenant may run that image (its own, or a
    base image): what the host checks its download against."""
    wanted = {(e["image"], e["tenant"]) for e in entries}
    rows = (
        Image.objects.filter(reference__in={reference for reference, _ in wanted})
        .exclude(archive="")
        .select_related("tenant")
    )
    return {
        image.reference: {"sha256": image.sha256, "size": image.size}
        for image in rows
        if image.tenant is None or (image.reference, image.tenant.slug) in wanted
    }


def host_archive(host: Host, reference: str) -> Image | None:
    """The image ``reference`` (InvalidRequest if malformed) with an uploaded archive that a replica
    placed on ``host`` runs, its tenant's own or a base image; None for any other (another host's
    image, another tenant's, one not placed here, one without an archive, one that does not exist)."""
    ref = normalize(reference)
    placed = Replica.objects.filter(host=host, release__image=ref)
    tenants = set(placed.values_list("app__tenant_id", flat=True))
    if not tenants:
        return None
    mine = Image.objects.filter(Q(tenant=None) | Q(tenant__in=tenants), reference=ref)
    return mine.exclude(archive="").first()
