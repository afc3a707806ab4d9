"""A build of a tenant's image from a Dockerfile, and what it printed."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Build(models.Model):
    """One build request: its context, options, the host that runs it and the outcome.

    ``output`` keeps the last lines the build printed (JSON list of ``{"stream", "text"}``)
    so the API can show them after the live stream (logstream kind "build") is gone.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="builds")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    name = models.CharField(max_length=200, help_text="<name>:<tag>; the image is <tenant>/<name>:<tag>")
    reference = models.CharField(max_length=255)
    dockerfile = models.CharField(max_length=500, default="Dockerfile")
    build_args = models.JSONField(default=dict, blank=True)
    target = models.CharField(max_length=128, blank=True)
    no_cache = models.BooleanField(default=False)
    context_archive = models.CharField(max_length=500, blank=True, help_text="uploaded context tar")
    context_path = models.CharField(max_length=500, blank=True, help_text="a directory under an allowed root")
    git_url = models.CharField(
        max_length=1000, blank=True, help_text="a git repository under an allowed root: PATH[#REF][:DIR]"
    )
    dockerfile_text = models.TextField(blank=True, help_text="a Dockerfile used instead of the context's")
    host = models.ForeignKey("hosts.Host", null=True, blank=True, on_delete=models.SET_NULL)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(blank=True)
    output = models.JSONField(default=list, blank=True)
    image = models.ForeignKey("images.Image", null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    dispatched_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="sent to the host's build queue; empty: waits for the tenant's fair share",
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"build {self.pk} of {self.reference}"
