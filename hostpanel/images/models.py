"""Images a tenant may run: base images (no tenant, provided by the admins) and a tenant's own."""

from __future__ import annotations

from django.conf import settings
from django.db import models

# A tenant's image name as uploaded or built: <name>[:<tag>] (stored as <tenant>/<name>:<tag>).
IMAGE_NAME_RE = r"^[a-z0-9][a-z0-9._-]{0,62}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$"


class Image(models.Model):
    """An image reference available to one tenant (or, without a tenant, to all).

    A tenant's own images are named ``<tenant slug>/<name>:<tag>``; their
    archive is kept under ``<var>/images/`` until a host that needs it imports it.
    """

    tenant = models.ForeignKey(
        "tenants.Tenant", null=True, blank=True, on_delete=models.CASCADE, related_name="images"
    )
    reference = models.CharField(max_length=255)
    archive = models.CharField(max_length=500, blank=True, help_text="path of the uploaded archive")
    size = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["reference"]
        constraints = [
            models.UniqueConstraint(fields=["reference"], name="image_reference_unique"),
        ]

    def __str__(self) -> str:
        return self.reference

    @property
    def is_base(self) -> bool:
        return self.tenant_id is None
