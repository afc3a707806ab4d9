"""`manage.py enroll_local --name local --state-dir var/agent --panel http://127.0.0.1:8000`: enroll
this machine's own host agent in-process (hostpanel/agent/local.py), or reuse its credentials.

`make run` (scripts/run.sh) runs it with the panel's environment, then starts the agent with
``--state-dir`` and an environment without the database, the panel's Redis URL or its secret keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import Error as DatabaseError

from hostpanel.agent import local


class Command(BaseCommand):
    help = "Enroll this machine's own host agent (idempotent): its key pair and credentials in --state-dir."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", default="local", help="the host's name (default: local)")
        parser.add_argument("--state-dir", type=Path, required=True, help="its key and credentials (0700)")
        parser.add_argument(
            "--panel",
            required=True,
            help="the URL its agent reaches the panel at: https://, or http:// to this machine",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        state: Path = opts["state_dir"]
        try:
            done = local.enroll(opts["name"], state, opts["panel"])
        except local.LocalEnrollError as exc:
            raise CommandError(f"enrolling host {opts['name']} failed: {exc}") from exc
        except DatabaseError as exc:
            raise CommandError(
                f"enrolling host {opts['name']} failed: the panel's database ({exc}); "
                "run `manage.py migrate` and check DATABASE_URL"
            ) from exc
        verb = "enrolled" if done.enrolled else "already enrolled"
        self.stdout.write(f"host {done.credentials.name}: {verb} ({done.why}); credentials in {state} (0600)")
