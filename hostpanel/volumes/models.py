"""Tenants' named volumes. On a host the engine volume is ``<tenant slug>.<name>``."""

from __future__ import annotations

from django.core.validators import RegexValidator
from django.db import models

VOLUME_NAME_RE = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class Volume(models.Model):
    """A named, size-capped volume of a tenant; created on a host when a container there mounts it."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="volumes")
    name = models.CharField(
        max_length=63, validators=[RegexValidator(VOLUME_NAME_RE, "use lowercase letters, digits, '_', '-'")]
    )
    size_bytes = models.PositiveBigIntegerField()
    labels = models.JSONField(default=dict, blank=True, help_text="Docker labels, shown back as given")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant", "name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="volume_name_per_tenant")]

    def __str__(self) -> str:
        return f"{self.tenant}/{self.name}"

    @property
    def engine_name(self) -> str:
        """The engine's name for it: tenant slugs have no '.', so names never collide across tenants."""
        return f"{self.tenant.slug}.{self.name}"
