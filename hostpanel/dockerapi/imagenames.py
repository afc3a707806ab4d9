"""Image names and ids as a tenant's door sees them (see :mod:`hostpanel.dockerapi.images`)."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db.models import Q

from engine.dockerapi.http import APIError
from engine.errors import InvalidReference
from engine.images.reference import normalize_tag
from hostpanel.images.models import Image
from hostpanel.tenants.models import Tenant


def registry_host() -> str:
    """The panel registry's ``host:port`` as clients name it in references."""
    return urlsplit(settings.HOSTPANEL_REGISTRY_URL).netloc.lower()


def without_registry(name: str) -> str:
    """``name`` without the panel registry's host prefix (the panel stores ``<slug>/<name>:<tag>``)."""
    first, sep, rest = name.partition("/")
    if sep and first.lower() == registry_host():
        return rest
    return name


def image_id(image: Image) -> str:
    """The image's id as the door shows it: its archive's sha256, or that of its reference."""
    return "sha256:" + (image.sha256 or hashlib.sha256(image.reference.encode()).hexdigest())


def visible(tenant: Tenant) -> Any:
    """The images ``tenant`` may run (base and own): the images service's set, without a role check
    (the door has checked the identity)."""
    return Image.objects.filter(Q(tenant=None) | Q(tenant=tenant))


def find_image(tenant: Tenant, name: str) -> Image:
    """The tenant's (or a base) image called ``name``: a reference (own ``<slug>/`` first) or an id
    (``sha256:<hex>`` or a unique hex prefix); 404 ``No such image`` otherwise."""
    ref = without_registry(name)
    hexpart = ref.removeprefix("sha256:")
    if hexpart and len(hexpart) <= 64 and all(c in "0123456789abcdef" for c in hexpart):
        by_id = [i for i in visible(tenant) if image_id(i).removeprefix("sha256:").startswith(hexpart)]
        if len({image_id(i) for i in by_id}) == 1:
            return by_id[0]
    try:
        normalized = normalize_tag(ref)
    except InvalidReference:
        raise APIError(404, f"No such image: {name}") from None
    candidates = [normalized]
    if not normalized.startswith(f"{tenant.slug}/"):
        candidates.insert(0, f"{tenant.slug}/{normalized}")
    for candidate in candidates:
        found = visible(tenant).filter(reference=candidate).first()
        if found is not None:
            return found
    raise APIError(404, f"No such image: {name}")


def run_reference(tenant: Tenant, name: str) -> str:
    """The panel reference a container of ``tenant`` runs for the image ``name`` (404 if not theirs)."""
    return find_image(tenant, name).reference
