"""`manage.py delete_tenant SLUG --as ADMIN [--yes]`: delete a tenant as the API and the admin site do.

Every host then purges what it holds of the tenant (see tenants.services.delete_tenant).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from hostpanel.audit.services import Actor
from hostpanel.errors import ServiceError
from hostpanel.tenants import services
from hostpanel.tenants.models import Tenant


class Command(BaseCommand):
    help = "Delete a tenant with everything it owns; every host purges its containers, images and data."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument(
            "--as", dest="admin", required=True, help="the staff user recorded in the audit log"
        )
        parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    def handle(self, *args: Any, **opts: Any) -> None:
        admin = get_user_model().objects.filter(username=opts["admin"], is_staff=True, is_active=True).first()
        if admin is None:
            raise CommandError(
                f"no active staff user {opts['admin']!r}; give --as an administrator's username"
            )
        tenant = Tenant.objects.filter(slug=opts["slug"]).first()
        if tenant is None:
            raise CommandError(f"no tenant {opts['slug']!r}")
        if not opts["yes"]:
            answer = input(f"Delete tenant {tenant.slug!r} and everything it owns on every host? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                raise CommandError("not deleted")
        try:
            services.delete_tenant(Actor(user=admin), tenant)
        except ServiceError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"deleted tenant {tenant.slug!r}; the hosts purge what they hold of it")
