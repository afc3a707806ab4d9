"""Custom domains: a name one app of one tenant answers at, once the tenant proved it owns it."""

from __future__ import annotations

import secrets

from django.db import models


def new_token() -> str:
    """The ownership token: 256 random bits, URL- and DNS-safe."""
    return secrets.token_hex(32)


class Domain(models.Model):
    """A custom domain of an app. Routed (and given a certificate) only once ``verified_at`` is set."""

    class Method(models.TextChoices):
        HTTP = "http"  # GET http://<name>/.well-known/hostpanel/<token> through our proxy
        DNS = "dns"  # TXT _hostpanel-challenge.<name> = hostpanel-verify=<token>

    class CertState(models.TextChoices):
        NONE = "none"  # not verified yet: the proxy refuses to ask for a certificate
        PENDING = "pending"  # verified; not checked yet, or the proxy has none yet
        ISSUED = "issued"
        EXPIRED = "expired"
        ERROR = "error"  # the proxy could not present one (see cert_error)
        ON_DEMAND = "on-demand"  # wildcards: one certificate per name, issued at its first request

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="domains")
    app = models.ForeignKey("deployments.App", on_delete=models.CASCADE, related_name="domains")
    # Normalised: lowercase ASCII (IDNA A-labels), no trailing dot; "*.example.com" for wildcards.
    name = models.CharField(max_length=253, unique=True)
    token = models.CharField(max_length=64, unique=True, default=new_token)
    verified_at = models.DateTimeField(null=True, blank=True)
    verified_method = models.CharField(max_length=8, choices=Method.choices, blank=True)
    cert_state = models.CharField(max_length=16, choices=CertState.choices, default=CertState.NONE)
    cert_issuer = models.CharField(max_length=255, blank=True)
    cert_expires_at = models.DateTimeField(null=True, blank=True)
    cert_checked_at = models.DateTimeField(null=True, blank=True)
    cert_error = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant", "name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_wildcard(self) -> bool:
        return self.name.startswith("*.")

    @property
    def verified(self) -> bool:
        return self.verified_at is not None

    @property
    def base_name(self) -> str:
        """The name without its ``*.`` (where a wildcard's TXT record lives)."""
        return self.name[2:] if self.is_wildcard else self.name
