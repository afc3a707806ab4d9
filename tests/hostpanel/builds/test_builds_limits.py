"""Item 7: a build of a tenant with no replicas on the host runs under the tenant's quota and its own limits.

The host agent's engine requires tenant limits; the tenant here has never run anything on the
host, so nothing but the build itself can have written its quota. While the RUN step runs, the
test reads the real cgroup files of the tenant and of the RUN container.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from engine.cgroups.controller import CgroupStats, host_driver
from engine.engine import Engine
from hostpanel.agent.usage import report_usage
from hostpanel.audit.services import Actor
from hostpanel.builds import services
from hostpanel.deployments.models import Replica
from hostpanel.hosts.models import Host
from hostpanel.tenants.models import Quota, Role, Tenant
from hostpanel.tenants.storage import storage_use
from tests.hostpanel.builds.conftest import context_tar
from tests.hostpanel.factories import MembershipFactory
from tests.hostpanel.hosts.enrolled_hosts import EnrolledAgents

pytestmark = [
    pytest.mark.privileged,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("host"),
]

MiB = 1024**2


def test_a_tenant_with_no_replicas_builds_under_its_quota_and_the_build_limits(
    agents: EnrolledAgents,
    engine: Engine,
    tenant: Tenant,
    host: Host,
    settings: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine.require_tenant_limits()  # as the host agent's engine does
    Quota.objects.filter(tenant=tenant).update(memory_bytes=300 * MiB, pids=200, cpu_millis=1000)
    settings.HOSTPANEL_BUILD_LIMITS = {"memory_bytes": 1024**3, "cpu_millis": 500, "pids": 50}
    settings.VAR_DIR = tmp_path
    assert not Replica.objects.filter(app__tenant=tenant).exists()
    assert engine.tenant_quota(tenant.slug).is_unlimited  # nothing of acme was ever on this host

    seen: dict[str, CgroupStats | None] = {}

    def publish(key: str, lines: list[dict[str, str]]) -> None:
        # the RUN step is still sleeping when its first line is published: read the live cgroups
        if any(line["text"] == "limits-probe" for line in lines):
            (run,) = engine.list()
            seen["tenant"] = host_driver().stats(engine.containers.quotas.cgroup(tenant.slug))
            seen["run"] = host_driver().stats(run.cgroup_path)

    monkeypatch.setattr(services, "_publish", publish)
    user = MembershipFactory(tenant=tenant, role=Role.DEVELOPER).user
    context = io.BytesIO(context_tar({"Dockerfile": "FROM busybox\nRUN echo limits-probe && sleep 5\n"}))
    build = services.start_build(Actor(user=user), tenant, name="web:1", context=context)
    build = agents.build(build, engine)
    assert (build.status, build.error) == ("succeeded", "")
    tenant_stats, run_stats = seen["tenant"], seen["run"]
    assert tenant_stats is not None and (tenant_stats.memory_limit, tenant_stats.pids_limit) == (
        300 * MiB,
        200,
    )
    # the build's own limits, lowered to the tenant's quota where that is lower (memory)
    assert run_stats is not None and (run_stats.memory_limit, run_stats.pids_limit) == (300 * MiB, 50)
    config = engine.tenant_quota(tenant.slug)
    assert (config.memory, config.pids, config.cpus) == (300 * MiB, 200, 1.0)
    # the build's cache counts against the tenant's storage quota, as the host's agent without the
    # database reports it (the tenant only built here: its storage, not its usage)
    answer = report_usage(engine, agents.client(host))
    assert answer is not None and answer["ignored"] == {"tenants": [], "containers": []}, answer
    assert storage_use(tenant).build_cache > 0


def test_a_build_run_over_the_build_process_limit_fails_and_leaves_nothing(
    agents: EnrolledAgents,
    engine: Engine,
    tenant: Tenant,
    settings: Any,
    tmp_path: Path,
    published: list[dict[str, str]],
) -> None:
    engine.require_tenant_limits()
    settings.HOSTPANEL_BUILD_LIMITS = {"memory_bytes": 256 * MiB, "cpu_millis": 500, "pids": 8}
    settings.VAR_DIR = tmp_path
    user = MembershipFactory(tenant=tenant, role=Role.DEVELOPER).user
    dockerfile = "FROM busybox\nRUN for i in $(seq 30); do sleep 5 & done; wait\n"
    context = io.BytesIO(context_tar({"Dockerfile": dockerfile}))
    build = services.start_build(Actor(user=user), tenant, name="web:1", context=context)
    build = agents.build(build, engine)
    assert build.status == "failed"
    assert "process limit (8: the build limit" in build.error
