"""``manage.py registry_gc``: delete registry blobs nothing needs (see hostpanel/registry/gc.py)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from hostpanel.registry.gc import collect_garbage


class Command(BaseCommand):
    help = (
        "Delete registry blobs that no manifest of any repository refers to and that are older than "
        "the grace period; reap expired uploads. Safe while the panel runs."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--grace-minutes",
            type=float,
            default=None,
            help="keep blobs younger than this (default HOSTPANEL_REGISTRY_GC_GRACE, 60 minutes)",
        )
        parser.add_argument("--dry-run", action="store_true", help="report what would go, delete nothing")

    def handle(self, *args: Any, grace_minutes: float | None, dry_run: bool, **options: Any) -> None:
        grace = None if grace_minutes is None else grace_minutes * 60
        report = collect_garbage(grace_seconds=grace, dry_run=dry_run)
        verb = "would delete" if dry_run else "deleted"
        self.stdout.write(
            f"{verb} {len(report.deleted_blobs)} blobs ({report.freed_bytes} bytes), "
            f"kept {report.kept_blobs}; "
            f"dropped {report.dropped_links} stale links; reaped {report.reaped_uploads} expired uploads"
        )
