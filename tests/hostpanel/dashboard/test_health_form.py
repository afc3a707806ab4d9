"""The deploy page's health check fields go through the same rule as the API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from hostpanel.deployments.models import App
from hostpanel.tenants.models import Role, Tenant

pytestmark = pytest.mark.django_db

FORM = {
    "name": "web",
    "image": "busybox:latest",
    "command": "sleep 3600",
    "network": "none",
    "replicas": "1",
    "cpu_millis": "100",
    "memory_mib": "32",
    "pids": "64",
    "restart_policy": "always",
}


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_timeout_longer_than_the_interval_is_refused_and_says_so(
    tenant: Tenant, host: Any, member: Callable[..., Any]
) -> None:
    client = signed_in(member(tenant, Role.DEVELOPER))
    health = {"health_kind": "http", "health_port": "8080", "health_interval": "10", "health_timeout": "20"}
    response = client.post(f"/t/{tenant.slug}/deploy/", FORM | health)
    assert response.status_code == 400
    assert "health_check.timeout: give seconds, more than 0 and at most the interval (10 s)" in (
        response.content.decode()
    )
    assert not App.objects.exists()


def test_a_tcp_check_within_bounds_is_deployed(tenant: Tenant, host: Any, member: Callable[..., Any]) -> None:
    client = signed_in(member(tenant, Role.DEVELOPER))
    health = {"health_kind": "tcp", "health_port": "5432", "health_interval": "10", "health_timeout": "2"}
    assert client.post(f"/t/{tenant.slug}/deploy/", FORM | health).status_code == 302
    release = App.objects.get(name="web").current_release
    assert release is not None
    assert release.health_check == {"tcp": {"port": 5432}, "interval": 10.0, "timeout": 2.0}
