"""What the registry knows about its repositories; the bytes live in the blob store (storage.py).

A repository is named ``<tenant slug>/<name>`` (or ``library/<name>`` for the
admins' base images). A repository *links* the blobs pushed or mounted into
it: only linked blobs can be read through it or referred to by its manifests.
"""

from __future__ import annotations

import uuid

from django.db import models


class Repository(models.Model):
    """A repository; ``tenant`` is None in the reserved ``library/`` namespace."""

    name = models.CharField(max_length=255, unique=True)
    tenant = models.ForeignKey(
        "tenants.Tenant", null=True, blank=True, on_delete=models.CASCADE, related_name="repositories"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "repositories"

    def __str__(self) -> str:
        return self.name


class BlobLink(models.Model):
    """A blob (layer or config) the repository holds."""

    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="blob_links")
    digest = models.CharField(max_length=71, db_index=True)
    size = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["repository", "digest"], name="one_link_per_blob")]

    def __str__(self) -> str:
        return f"{self.repository}@{self.digest}"


class Manifest(models.Model):
    """A manifest or index pushed into a repository (its bytes are a blob of the store)."""

    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="manifests")
    digest = models.CharField(max_length=71, db_index=True)
    media_type = models.CharField(max_length=255)
    size = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["repository", "digest"], name="one_manifest_per_digest")
        ]

    def __str__(self) -> str:
        return f"{self.repository}@{self.digest}"


class ManifestReference(models.Model):
    """A digest a manifest needs: its config, a layer, or (for an index) a sub-manifest."""

    manifest = models.ForeignKey(Manifest, on_delete=models.CASCADE, related_name="references")
    digest = models.CharField(max_length=71, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["manifest", "digest"], name="one_reference_per_digest")
        ]


class Tag(models.Model):
    """A tag of a repository pointing at one of its manifests."""

    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=128)
    manifest = models.ForeignKey(Manifest, on_delete=models.CASCADE, related_name="tags")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["repository", "name"], name="one_tag_per_name")]

    def __str__(self) -> str:
        return f"{self.repository}:{self.name}"


class Upload(models.Model):
    """A blob upload in progress; its bytes are in ``<registry root>/uploads/<id>``.

    Holds the repository by name: an upload that never finishes leaves no
    repository behind. Uploads untouched for HOSTPANEL_REGISTRY_UPLOAD_TTL are reaped.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    repository_name = models.CharField(max_length=255)
    tenant = models.ForeignKey("tenants.Tenant", null=True, blank=True, on_delete=models.CASCADE)
    size = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    def __str__(self) -> str:
        return f"upload {self.id} to {self.repository_name}"
