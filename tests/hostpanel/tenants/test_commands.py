"""Management commands: seed_demo (idempotent) and the host agent's capacity probe."""

from __future__ import annotations

import io
import stat
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from hostpanel.agent.management.commands.hostagent import memory_bytes
from hostpanel.tenants.models import ApiToken, Membership, Role, Tenant
from hostpanel.tenants.services import authenticate_token

pytestmark = pytest.mark.django_db


def seed(*args: str) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def test_seed_demo_is_idempotent_and_prints_a_working_token(settings: Any, tmp_path: Path) -> None:
    settings.VAR_DIR = tmp_path
    first = seed("--token")
    second = seed("--token")
    assert get_user_model().objects.filter(username="admin", is_staff=True).count() == 1
    assert Tenant.objects.filter(slug="demo").count() == 1
    assert Membership.objects.get(tenant__slug="demo", user__username="demo").role == Role.OWNER
    secrets = [
        line.split()[-1] for text in (first, second) for line in text.splitlines() if "API token" in line
    ]
    assert authenticate_token(secrets[0]) is None  # the older token was revoked
    assert authenticate_token(secrets[1]) is not None
    assert ApiToken.objects.filter(revoked_at=None).count() == 1
    password = next(line.split()[-1] for line in first.splitlines() if "admin password" in line)
    assert password in second  # the same credentials every time
    assert stat.S_IMODE((tmp_path / "demo_credentials").stat().st_mode) == 0o600


def test_memory_capacity_comes_from_meminfo() -> None:
    assert memory_bytes() > 64 * 1024**2
