"""`manage.py host add NAME` / `revoke NAME` / `list` / `restore-acl`: enroll and revoke hosts.

``add`` prints the one-time join command to run as root on the new machine (its token is
shown once and only its hash is kept); ``revoke`` takes the host's credentials away at once;
``restore-acl`` re-creates the Redis users a restarted Redis lost (heartbeats also do it).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from hostpanel.errors import ServiceError
from hostpanel.hosts import enrollment
from hostpanel.hosts.models import Host


class Command(BaseCommand):
    help = "Enroll (add), revoke or list hosts."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="create a pending host and print its one-time join command")
        add.add_argument("name")
        revoke = sub.add_parser("revoke", help="delete the host's Redis user and invalidate its token")
        revoke.add_argument("name")
        sub.add_parser("list", help="hosts with their enrollment state")
        sub.add_parser("restore-acl", help="re-create enrolled hosts' Redis users Redis lost (its restart)")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            if opts["action"] == "add":
                invitation = enrollment.add_host(None, opts["name"])
                self.stdout.write(
                    f"host {invitation.host.name} is pending. On the new machine, as root, run "
                    f"(the token works once, until {invitation.expires_at:%Y-%m-%d %H:%M:%S} UTC):\n"
                )
                self.stdout.write(invitation.command)
            elif opts["action"] == "revoke":
                host = enrollment.revoke(None, opts["name"])
                self.stdout.write(f"host {host.name}: credentials revoked")
            elif opts["action"] == "restore-acl":
                for name in enrollment.restore_redis_users():
                    self.stdout.write(f"host {name}: Redis user re-created")
            else:
                states = enrollment.enrollment_states()
                for host in Host.objects.all():
                    self.stdout.write(f"{host.name}\t{host.state}\t{states[host.pk]}")
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
