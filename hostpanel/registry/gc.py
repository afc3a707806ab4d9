"""Garbage collection of the registry's blobs: mark and sweep with a grace period.

1. Reap uploads idle for longer than HOSTPANEL_REGISTRY_UPLOAD_TTL (their rows
   and files in ``uploads/``), and upload files no row knows of that are as old.
2. Under the exclusive GC lock (every writer that commits a blob, links one or
   stores a manifest holds it shared, so the database and the store agree):
   *mark* every manifest digest and every digest a manifest of any repository
   refers to (configs, layers, sub-manifests); drop repository links to blobs
   no manifest refers to once they are older than the grace period (a push
   uploads blobs before its manifest); mark the blobs still linked.
3. *Sweep*: delete each blob file that is not marked and was written more than
   the grace period ago (HOSTPANEL_REGISTRY_GC_GRACE, default 60 minutes).

Manifests themselves stay until deleted (``DELETE /v2/<name>/manifests/<digest>``),
tagged or not, and keep everything they refer to.

An upload in progress never has a file in ``blobs/``: its bytes move there
only when it completes, under the shared lock, with a fresh modification time.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from hostpanel.registry import storage
from hostpanel.registry.models import BlobLink, Manifest, ManifestReference, Upload


@dataclass
class GcReport:
    """What one run did (or, with dry_run, would do)."""

    deleted_blobs: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    dropped_links: int = 0
    reaped_uploads: int = 0
    kept_blobs: int = 0


def collect_garbage(*, grace_seconds: float | None = None, dry_run: bool = False) -> GcReport:
    """Run the mark-and-sweep described in the module docstring; returns a :class:`GcReport`."""
    grace = settings.HOSTPANEL_REGISTRY_GC_GRACE if grace_seconds is None else grace_seconds
    report = GcReport()
    _reap_uploads(report, dry_run)
    store = storage.blob_store()
    cutoff = time.time() - grace
    with storage.gc_lock(exclusive=True):
        referenced = set(Manifest.objects.values_list("digest", flat=True))
        referenced |= set(ManifestReference.objects.values_list("digest", flat=True))
        stale = BlobLink.objects.exclude(digest__in=referenced).filter(
            created_at__lt=timezone.now() - timedelta(seconds=grace)
        )
        stale_ids = list(stale.values_list("pk", flat=True))
        report.dropped_links = len(stale_ids)
        if not dry_run:
            BlobLink.objects.filter(pk__in=stale_ids).delete()
        marked = referenced | set(BlobLink.objects.exclude(pk__in=stale_ids).values_list("digest", flat=True))
        for digest in sorted(store.digests()):
            path = store.path(digest)
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            if digest in marked or stat.st_mtime > cutoff:
                report.kept_blobs += 1
                continue
            report.deleted_blobs.append(digest)
            report.freed_bytes += stat.st_size
            if not dry_run:
                store.delete(digest)
        if not dry_run:
            _clean_dir(store.tmp_dir, cutoff)
    return report


def _reap_uploads(report: GcReport, dry_run: bool) -> None:
    ttl = settings.HOSTPANEL_REGISTRY_UPLOAD_TTL
    expired = Upload.objects.filter(updated_at__lt=timezone.now() - timedelta(seconds=ttl))
    known = {str(u) for u in Upload.objects.values_list("id", flat=True)}
    for upload in expired:
        report.reaped_uploads += 1
        if not dry_run:
            storage.remove_upload_file(str(upload.id))
            upload.delete()
    if dry_run:
        return
    cutoff = time.time() - ttl
    for path in storage.uploads_dir().iterdir():
        if path.name not in known:
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    os.unlink(path)


def _clean_dir(directory: os.PathLike[str] | str, cutoff: float) -> None:
    """Delete staging leftovers older than ``cutoff`` (a crashed writer's temp files)."""
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            with contextlib.suppress(FileNotFoundError):
                if entry.is_file() and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
