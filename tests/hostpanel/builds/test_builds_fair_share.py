"""Fair share of a host's build slots: which waiting builds the panel sends to the build queue.

The end-to-end proof with a real agent is in test_builds_fairness_e2e.py; here the rule
itself, with the sends recorded at the seam builds.dispatch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from hostpanel.builds.models import Build
from hostpanel.builds.services import dispatch_builds, redispatch_host_builds, tenant_build_slots
from hostpanel.hosts.models import Host
from hostpanel.tenants.models import Tenant
from tests.hostpanel.factories import TenantFactory


@pytest.mark.parametrize(
    ("slots", "tenant_slots", "share"),
    [(1, None, 1), (2, None, 1), (3, None, 2), (4, None, 2), (4, 3, 3), (2, 2, 1), (4, 9, 3)],
)
def test_a_tenant_never_gets_every_slot_of_a_host_with_two_or_more(
    settings: Any, slots: int, tenant_slots: int | None, share: int
) -> None:
    settings.HOSTPANEL_BUILD_SLOTS = slots
    settings.HOSTPANEL_BUILD_TENANT_SLOTS = tenant_slots
    assert tenant_build_slots() == share


def queue(tenant: Tenant, host: Host, n: int) -> list[int]:
    return [
        Build.objects.create(tenant=tenant, host=host, name=f"b{i}:1", reference=f"{tenant.slug}/b{i}:1").pk
        for i in range(n)
    ]


def test_a_tenants_other_builds_wait_and_go_one_by_one_as_its_builds_end(
    tenant: Tenant,
    host: Host,
    settings: Any,
    sent_builds: list[tuple[int, str]],
    on_commit: Callable[[], Any],
) -> None:
    settings.HOSTPANEL_BUILD_SLOTS = 2
    other = TenantFactory(slug="other")
    hog = queue(tenant, host, 3)
    mine = queue(other, host, 1)
    with on_commit():
        assert dispatch_builds(host) == [hog[0], mine[0]]
    assert sent_builds == [(hog[0], "build.h1"), (mine[0], "build.h1")]
    assert list(Build.objects.filter(pk__in=hog[1:]).values_list("status", "dispatched_at")) == [
        ("queued", None),
        ("queued", None),
    ]
    assert dispatch_builds(host) == []  # nothing more while the first one is sent or running
    Build.objects.filter(pk=hog[0]).update(status=Build.Status.RUNNING)
    assert dispatch_builds(host) == []
    Build.objects.filter(pk=hog[0]).update(status=Build.Status.FAILED)
    assert dispatch_builds(host) == [hog[1]]  # oldest first
    assert redispatch_host_builds(host) == [hog[1], mine[0]]  # agent restart: sent again, same share
