"""``manage.py check_certificates``: record what certificate each host's proxy presents for every
verified domain (run it from cron, e.g. daily, so the dashboard and API show renewals and expiries)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from hostpanel.domains.models import Domain
from hostpanel.domains.services import record_certificate


class Command(BaseCommand):
    help = "Record the certificate state and expiry of every verified custom domain."

    def handle(self, *args: Any, **options: Any) -> None:
        domains = Domain.objects.filter(verified_at__isnull=False).exclude(name__startswith="*.")
        for domain in domains.order_by("name"):
            record_certificate(domain)
            expiry = f", expires {domain.cert_expires_at:%Y-%m-%d}" if domain.cert_expires_at else ""
            error = f" ({domain.cert_error})" if domain.cert_error else ""
            self.stdout.write(f"{domain.name}: {domain.cert_state}{expiry}{error}")
