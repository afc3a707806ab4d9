"""Business rules of images: which images a tenant may run, uploads, base images.

A tenant runs base images (registered by the admins, or by a host agent for
the images its engine holds that belong to no tenant) and its own uploads,
which are named ``<slug>/<name>:<tag>`` so no tenant can run another's.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import IO

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet

from engine.errors import InvalidReference
from engine.images.bounded import ArchiveBomb
from engine.images.compression import check_archive
from engine.images.reference import normalize_tag
from hostpanel.audit.services import Actor, audited
from hostpanel.errors import Conflict, Forbidden, InvalidRequest, NotFound
from hostpanel.images.models import IMAGE_NAME_RE, Image
from hostpanel.tenants.access import require_admin, require_role
from hostpanel.tenants.models import Role, Tenant
from hostpanel.tenants.signals import apps_using
from hostpanel.tenants.storage import check_storage, sum_of

_NAME_RE = re.compile(IMAGE_NAME_RE)
MAX_UPLOAD_BYTES = 4 * 1024**3
CHUNK = 1024 * 1024


def normalize(reference: str) -> str:
    """The stored ``name:tag`` form; InvalidRequest for a malformed reference."""
    try:
        return normalize_tag(reference)
    except InvalidReference as exc:
        raise InvalidRequest(f"image: {exc}") from exc


def available_images(actor: Actor, tenant: Tenant) -> QuerySet[Image]:
    require_role(actor, tenant, Role.VIEWER)
    return Image.objects.filter(Q(tenant=None) | Q(tenant=tenant))


def check_available(tenant: Tenant, reference: str) -> str:
    """The normalized reference if ``tenant`` may run it, else InvalidRequest saying what to do."""
    ref = normalize(reference)
    if Image.objects.filter(Q(tenant=None) | Q(tenant=tenant), reference=ref).exists():
        return ref
    raise InvalidRequest(
        f"image {ref!r} is not available to tenant {tenant.slug!r}: use a base image "
        f"(GET /api/v1/tenants/{tenant.slug}/images/) or upload yours as {tenant.slug}/<name>:<tag>"
    )


def register_base_images(references: list[str]) -> list[Image]:
    """Make the given references base images (a host agent calls this for its engine's images).

    References under a tenant's namespace (``<slug>/...``) are never made base images.
    """
    slugs = set(Tenant.objects.values_list("slug", flat=True))
    made = []
    for reference in references:
        ref = normalize(reference)
        if ref.split("/", 1)[0] in slugs and "/" in ref:
            continue
        image, created = Image.objects.get_or_create(reference=ref, defaults={"tenant": None})
        if created:
            made.append(image)
    return made


def add_base_image(actor: Actor, reference: str) -> Image:
    """Register a base image every tenant may run (admins); the hosts must hold it."""
    require_admin(actor)
    ref = normalize(reference)
    if "/" in ref and Tenant.objects.filter(slug=ref.split("/", 1)[0]).exists():
        raise InvalidRequest(f"{ref!r} is in a tenant's namespace; base images cannot be")
    with audited(actor, "image.add_base", None) as entry:
        image, _ = Image.objects.get_or_create(reference=ref, defaults={"tenant": None})
        if image.tenant_id is not None:
            raise Conflict(f"{ref!r} is a tenant's image")
        entry.obj = image
    return image


def check_image_name(name: str) -> None:
    """Raise InvalidRequest unless ``name`` is a tenant image name ``<name>[:<tag>]``."""
    if not _NAME_RE.match(name):
        raise InvalidRequest("name: give <name>[:<tag>] in lowercase letters, digits, '.', '_', '-'")


def upload_image(actor: Actor, tenant: Tenant, name: str, archive: IO[bytes]) -> Image:
    """Store an uploaded docker-save or OCI archive as ``<slug>/<name>``; hosts import it on first use."""
    require_role(actor, tenant, Role.DEVELOPER)
    check_image_name(name)
    reference = normalize(f"{tenant.slug}/{name}")
    directory = Path(settings.VAR_DIR) / "images" / tenant.slug
    directory.mkdir(parents=True, exist_ok=True)
    existing = Image.objects.filter(reference=reference).first()
    if existing is not None and existing.tenant_id != tenant.pk:
        raise Conflict(f"{reference!r} is taken by a base image; choose another name")
    with audited(actor, "image.upload", tenant) as entry:
        digest, size, tmp = hashlib.sha256(), 0, directory / f".upload-{os.getpid()}-{id(archive)}"
        try:
            with tmp.open("wb") as out:
                while chunk := archive.read(CHUNK):
                    size += len(chunk)
                    if size > MAX_UPLOAD_BYTES:
                        raise InvalidRequest(f"archive larger than {MAX_UPLOAD_BYTES} bytes")
                    digest.update(chunk)
                    out.write(chunk)
            if size == 0:
                raise InvalidRequest("archive: the file is empty")
            check_storage(tenant, size - (existing.size if existing is not None else 0), "the image upload")
            try:
                check_archive(tmp)  # a decompression bomb is refused before it is stored
            except ArchiveBomb as exc:
                raise InvalidRequest(f"archive: {exc}") from None
            path = directory / f"{digest.hexdigest()}.tar"
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        old_archive = existing.archive if existing is not None else ""
        with transaction.atomic():
            image, _ = Image.objects.update_or_create(
                reference=reference,
                defaults={
                    "tenant": tenant,
                    "archive": str(path),
                    "size": size,
                    "sha256": digest.hexdigest(),
                    "created_by": actor.user if getattr(actor.user, "pk", None) else None,
                },
            )
        entry.obj = image
    if old_archive and old_archive != image.archive:
        forget_archive(old_archive)
    return image


def tag_image(actor: Actor, tenant: Tenant, source: Image, name: str) -> Image:
    """Give ``tenant``'s image ``source`` the further name ``<slug>/<name>`` (developers).

    The new name shares the source's stored archive (so every host imports the same image); a
    base image or one only the panel's registry holds has no archive to share and is refused,
    saying how to make the name instead. Like an upload, the name counts ``source.size`` in the
    storage quota. A name the tenant already has now points at ``source``."""
    require_role(actor, tenant, Role.DEVELOPER)
    check_image_name(name)
    reference = normalize(f"{tenant.slug}/{name}")
    if source.tenant_id != tenant.pk:
        raise Forbidden(
            f"{source.reference} is one of the operator's base images: it cannot take a name in your"
            f" namespace; build FROM it instead (FROM {source.reference})"
        )
    if not source.archive:
        raise InvalidRequest(
            f"{source.reference} is held by the panel's registry: push it again under the new name"
        )
    existing = Image.objects.filter(reference=reference).first()
    if existing is not None and existing.tenant_id != tenant.pk:
        raise Conflict(f"{reference!r} is taken by a base image; choose another name")
    if existing is not None and existing.archive == source.archive:
        return existing
    with audited(actor, "image.tag", tenant) as entry:
        check_storage(tenant, source.size - (existing.size if existing is not None else 0), "the image tag")
        old_archive = existing.archive if existing is not None else ""
        image, _ = Image.objects.update_or_create(
            reference=reference,
            defaults={
                "tenant": tenant,
                "archive": source.archive,
                "size": source.size,
                "sha256": source.sha256,
                "created_by": actor.user if getattr(actor.user, "pk", None) else None,
            },
        )
        entry.obj = image
    forget_archive(old_archive)
    return image


def forget_archive(path: str) -> None:
    """Delete an uploaded archive no image record points at any more."""
    if path and not Image.objects.filter(archive=path).exists():
        Path(path).unlink(missing_ok=True)


def forget_tenant_archives(tenant: Tenant) -> None:
    """Delete a (deleted) tenant's uploaded archives."""
    directory = Path(settings.VAR_DIR) / "images" / tenant.slug
    if directory.is_dir():
        for path in directory.iterdir():
            path.unlink(missing_ok=True)
        directory.rmdir()


def delete_image(actor: Actor, image: Image) -> None:
    """Delete a tenant's image record (not while an app's current release uses it)."""
    if image.tenant is None:
        raise NotFound("no such image of this tenant")
    tenant = image.tenant
    require_role(actor, tenant, Role.DEVELOPER)
    with audited(actor, "image.delete", tenant, image):
        if apps_using("image", image.reference, tenant):
            raise Conflict(f"image {image.reference!r} is used by an app; deploy another image first")
        archive = image.archive
        image.delete()
    forget_archive(archive)


def forget_deleted_tenant(sender: object, tenant: Tenant, **kwargs: object) -> None:
    """tenants.signals.tenant_gone (connected in ImagesConfig.ready): see :func:`forget_tenant_archives`."""
    forget_tenant_archives(tenant)


def stored_bytes(sender: object, tenant: Tenant, **kwargs: object) -> dict[str, int]:
    """tenants.signals.stored_bytes (connected in ImagesConfig.ready): the tenant's image archives."""
    return {"images": sum_of(Image.objects.filter(tenant=tenant), "size")}
