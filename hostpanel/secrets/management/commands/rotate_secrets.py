"""`manage.py rotate_secrets [--new-key]`: re-encrypt every secret with the primary key."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from hostpanel.secrets import services


class Command(BaseCommand):
    help = (
        "Re-encrypt every tenant secret with the primary (first) key. With --new-key, first put a "
        "freshly generated key at the front of var/secret_keys. Afterwards old keys may be removed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--new-key", action="store_true", help="generate a new primary key first")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["new_key"]:
            services.add_primary_key()
            self.stdout.write(f"added a new primary key to {services.key_file()}")
        count = services.rotate_all()
        self.stdout.write(f"re-encrypted {count} secret(s) with the primary key")
