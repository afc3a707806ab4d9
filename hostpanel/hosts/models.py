"""Hosts: the machines that run containers, each with one host agent."""

from __future__ import annotations

from django.db import models


class Host(models.Model):
    """A container host. Its agent consumes the Celery queue ``host.<name>`` (control work) and its
    build workers ``build.<name>``."""

    class State(models.TextChoices):
        """Liveness, from heartbeats (services.heartbeat / mark_stale_hosts)."""

        UP = "up"
        DOWN = "down"

    # ---- host lifecycle (issue 15): what admins asked of the host; lifecycle.py's state machine
    class Lifecycle(models.TextChoices):
        ACTIVE = "active"  # takes new replicas
        CORDONED = "cordoned"  # no new placements; what runs stays
        DRAINING = "draining"  # cordoned, its movable replicas being rolled onto other hosts
        DRAINED = "drained"  # cordoned, nothing movable left on it (pinned replicas may stay)
        EVACUATING = "evacuating"  # draining, then out of service
        EVACUATED = "evacuated"  # out of service: nothing runs, no heartbeat is expected

    name = models.CharField(max_length=63, unique=True)
    address = models.CharField(max_length=255, blank=True)
    cpu_millis = models.PositiveIntegerField(help_text="capacity in thousandths of a core")
    memory_bytes = models.PositiveBigIntegerField()
    disk_bytes = models.PositiveBigIntegerField(default=0)
    labels = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.UP)
    lifecycle = models.CharField(max_length=16, choices=Lifecycle.choices, default=Lifecycle.ACTIVE)
    lifecycle_changed_at = models.DateTimeField(null=True, blank=True)
    last_heartbeat = models.DateTimeField(null=True, blank=True)
    engine_root = models.CharField(max_length=500, blank=True)
    engine_instance = models.CharField(max_length=63, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def queue(self) -> str:
        return f"host.{self.name}"

    @property
    def build_queue(self) -> str:
        return f"build.{self.name}"


class TenantPurge(models.Model):
    """A deleted tenant whose things a host still holds: its agent purges them, then this row goes.

    Made for every host when a tenant is deleted; sent to the host's agent at once, and again
    at its next registration or heartbeat while the row stays (a host that was down, a failed
    purge): the task wakes the agent's reconcile, which finds it in its desired document
    (``purge_tenants``: :func:`hosts.services.pending_purges`; ``attempted_at`` spaces its retries).
    While any row of a slug stays, no new tenant may take that slug.
    """

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="tenant_purges")
    tenant_slug = models.CharField(max_length=63)
    requested_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    attempted_at = models.DateTimeField(null=True, blank=True)  # its last failed attempt

    class Meta:
        ordering = ["requested_at"]
        constraints = [
            models.UniqueConstraint(fields=["host", "tenant_slug"], name="one_purge_per_host_tenant")
        ]

    def __str__(self) -> str:
        return f"purge of {self.tenant_slug} on {self.host}"


# --- Enrollment (issue 15): join tokens and per-host credentials --------------------------------


class HostJoinToken(models.Model):
    """A one-time token `manage.py host add` hands out: only its SHA-256 is kept; used once, expires."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="join_tokens")
    token_hash = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"join token of {self.host}"


class HostCredential(models.Model):
    """What an enrolled host holds: its public key, the hash of its internal-API token, the name of
    its Redis ACL user and the hash of that user's password (Redis keeps ACL users in memory only:
    the panel re-creates a lost one from it). Revoking sets ``revoked_at`` (and deletes the user)."""

    host = models.OneToOneField(Host, on_delete=models.CASCADE, related_name="credential")
    public_key = models.TextField(help_text="the host's X25519 public key, PEM")
    token_hash = models.CharField(max_length=64, unique=True)
    redis_user = models.CharField(max_length=100)
    redis_password_hash = models.CharField(
        max_length=64,
        help_text="SHA-256 of the Redis password: re-creates a lost ACL user",
    )
    enrolled_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"credentials of {self.host}"
