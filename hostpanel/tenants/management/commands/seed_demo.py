"""`manage.py seed_demo [--token]`: an admin, a demo tenant with its owner; idempotent.

Passwords come from ``HOSTPANEL_ADMIN_PASSWORD`` / ``HOSTPANEL_DEMO_PASSWORD``,
else they are generated once and kept in ``var/demo_credentials`` (0600).
With ``--token`` a fresh API token for the demo owner is made and printed (the
previous token made this way is revoked).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.utils import timezone

from hostpanel.audit.services import Actor
from hostpanel.tenants import services
from hostpanel.tenants.models import ApiToken, Membership, Role, Tenant

TOKEN_NAME = "seed_demo"


def _credentials() -> dict[str, str]:
    path = Path(settings.VAR_DIR) / "demo_credentials"
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    creds = {
        "admin": os.environ.get("HOSTPANEL_ADMIN_PASSWORD")
        or stored.get("admin")
        or secrets.token_urlsafe(12),
        "demo": os.environ.get("HOSTPANEL_DEMO_PASSWORD") or stored.get("demo") or secrets.token_urlsafe(12),
    }
    if creds != stored:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(creds, f)
    return creds


class Command(BaseCommand):
    help = "Create (or keep) an admin user, a demo tenant and its owner; print how to log in."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--token", action="store_true", help="make and print an API token for the demo owner"
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        creds = _credentials()
        User = get_user_model()
        with transaction.atomic():
            admin, _ = User.objects.get_or_create(username="admin", defaults={"email": "admin@localhost"})
            admin.is_staff = admin.is_superuser = True
            admin.set_password(creds["admin"])
            admin.save()
            demo, _ = User.objects.get_or_create(username="demo", defaults={"email": "demo@localhost"})
            demo.set_password(creds["demo"])
            demo.save()
            tenant = Tenant.objects.filter(slug="demo").first()
            if tenant is None:
                tenant = services.create_tenant(Actor(user=admin), "demo", "Demo tenant", owner=demo)
            Membership.objects.get_or_create(user=demo, tenant=tenant, defaults={"role": Role.OWNER})
        self.stdout.write("users: admin (staff) and demo (owner of tenant 'demo')")
        self.stdout.write(f"  admin password: {creds['admin']}")
        self.stdout.write(
            f"  demo password:  {creds['demo']}   (all kept in {Path(settings.VAR_DIR) / 'demo_credentials'})"
        )
        if opts["token"]:
            ApiToken.objects.filter(user=demo, tenant=tenant, name=TOKEN_NAME, revoked_at=None).update(
                revoked_at=timezone.now()
            )
            _, secret = services.create_token(Actor(user=demo), tenant, TOKEN_NAME)
            self.stdout.write(f"  demo API token: {secret}")
