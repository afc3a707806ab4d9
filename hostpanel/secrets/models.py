"""Tenants' secrets: only the Fernet token of the value is stored."""

from __future__ import annotations

from django.core.validators import RegexValidator
from django.db import models

SECRET_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


class Secret(models.Model):
    """A named value of one tenant, encrypted at rest; the API never returns it."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="secrets")
    name = models.CharField(
        max_length=63, validators=[RegexValidator(SECRET_NAME_RE, "use letters, digits, '_', '.', '-'")]
    )
    ciphertext = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["tenant", "name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="secret_name_per_tenant")]

    def __str__(self) -> str:
        return f"{self.tenant}/{self.name}"
