"""Tenants, their members and roles, API tokens and quotas."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

from engine.errors import InvalidSpec
from engine.networks.egress import parse_allow_list

# The engine's tenant names (engine/runtime/idmap.py): the slug is used as the engine tenant.
SLUG_RE = r"^[a-z0-9][a-z0-9_-]{0,62}$"
slug_validator = RegexValidator(
    SLUG_RE, "use 1-63 lowercase letters, digits, '_' or '-', starting with a letter or digit"
)  # the migration copies this message


class Role(models.TextChoices):
    """What a member may do, each including the ones before it."""

    VIEWER = "viewer"
    DEVELOPER = "developer"
    OWNER = "owner"


ROLE_RANK = {Role.VIEWER: 1, Role.DEVELOPER: 2, Role.OWNER: 3}


class Tenant(models.Model):
    """A business that deploys apps; its slug names it in the engine (cgroups, UID range)."""

    slug = models.CharField(max_length=63, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class Membership(models.Model):
    """A user's role in a tenant."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant", "user"]
        constraints = [models.UniqueConstraint(fields=["user", "tenant"], name="one_membership_per_user")]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant} ({self.role})"


class ApiToken(models.Model):
    """A secret a user made for one tenant. Only its sha256 is stored; the secret is shown once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, help_text="the first characters of the secret, to recognise it")
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        now = timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class Quota(models.Model):
    """What a tenant may use in total, set by an admin. Checked on every create/scale/update."""

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, related_name="quota")
    cpu_millis = models.PositiveIntegerField(help_text="total CPU in thousandths of a core")
    memory_bytes = models.PositiveBigIntegerField()
    pids = models.PositiveIntegerField()
    disk_bytes = models.PositiveBigIntegerField(help_text="total size of the tenant's volumes")
    containers = models.PositiveIntegerField()
    volumes = models.PositiveIntegerField()
    egress_allow = models.JSONField(
        default=list,
        blank=True,
        help_text="CIDR ranges the tenant's containers may reach besides the internet "
        '(private, shared and link-local ranges are closed by default), e.g. ["10.20.0.0/16"]',
    )
    build_time_limit = models.PositiveIntegerField(
        default=30 * 60,
        validators=[MinValueValidator(1)],
        help_text="seconds a build may run; past it the host agent kills it and marks it failed",
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"quota of {self.tenant}"

    def clean(self) -> None:
        """Normalise ``egress_allow`` with the engine's own rule; ValidationError for a bad range."""
        if not isinstance(self.egress_allow, list) or not all(isinstance(c, str) for c in self.egress_allow):
            raise ValidationError({"egress_allow": 'a list of CIDR ranges, e.g. ["10.20.0.0/16"]'})
        try:
            self.egress_allow = list(parse_allow_list(self.egress_allow))
        except InvalidSpec as exc:
            raise ValidationError({"egress_allow": str(exc)}) from None
