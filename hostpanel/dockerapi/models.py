"""Client certificates issued for the Docker API, and the containers made through it."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from hostpanel.tenants.models import Role


class ClientCertificate(models.Model):
    """A certificate the panel's CA signed for a member in one tenant (the private key is never stored)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="docker_certificates"
    )
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="docker_certificates")
    name = models.CharField(max_length=100, help_text="what it is for (a laptop, a CI runner)")
    role = models.CharField(max_length=16, choices=Role.choices, help_text="the member's role at issue time")
    serial = models.CharField(max_length=64, unique=True)
    fingerprint = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the certificate")
    created_at = models.DateTimeField(auto_now_add=True)
    not_after = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.user} in {self.tenant}, {self.role})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and self.not_after > timezone.now()


class DockerContainer(models.Model):
    """An app made through the Docker API: one container (replicas=1) with its Docker face.

    The app is the panel's own state (scheduled, under quota, in the dashboard and usage);
    this row adds what Docker clients see: the 64-hex id, the name as given, and the
    create body's fields the panel keeps only to show them back (labels, exactly as sent).
    """

    app = models.OneToOneField("deployments.App", on_delete=models.CASCADE, related_name="docker")
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="docker_containers")
    docker_id = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=128)
    config = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant", "name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="docker_name_per_tenant")]

    def __str__(self) -> str:
        return f"{self.tenant}/{self.name}"
