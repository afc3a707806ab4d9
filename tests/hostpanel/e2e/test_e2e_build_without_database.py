"""End to end: an image build on an enrolled agent.

The agent joins the real panel over HTTPS (test_e2e_enrollment.start_without_database) with no
``DATABASE_URL``, panel ``REDIS_URL`` nor the panel's secret key. A developer starts a build with an
uploaded context (``FROM busybox`` + ``COPY`` + ``RUN``); the agent's build worker takes the
``run_build`` message from ``build.<name>`` as the host's own Redis ACL user, claims the build,
downloads its context, posts its output, uploads the image and finishes, all over HTTPS through the
internal API (hostpanel/agent/remote_build.py, hostpanel/builds/internal.py). The build succeeds,
its output has the RUN step's line and the image is the tenant's, nothing another tenant's.

A second build whose message never reached Redis (the broker failed as it was sent) is sent by the
panel again on the agent's next heartbeat (``POST heartbeat``: builds.services.dispatch_on_heartbeat)
and runs too.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.hostpanel.builds.conftest import context_tar
from tests.hostpanel.e2e.test_e2e_enrollment import Monitor, panel  # noqa: F401
from tests.stack import Panel, remove_agent_leftovers, start_without_database, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.usefixtures("privileged")]

DOCKERFILE = "FROM busybox\nCOPY hello.txt /hello.txt\nRUN echo built-$(cat /hello.txt)\n"


def test_an_agent_without_the_database_builds_an_uploaded_context(
    panel: Panel,  # noqa: F811
    tmp_path: Path,
    redis_url: str,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hostpanel.audit.services import Actor
    from hostpanel.builds import services as builds
    from hostpanel.builds.models import Build
    from hostpanel.hosts.models import Host
    from hostpanel.images.models import Image
    from hostpanel.tenants import services as tenants
    from hostpanel.tenants.models import Role
    from tests.hostpanel.factories import UserFactory

    settings.VAR_DIR = tmp_path / "test-var"  # the context uploads this process stores
    agent = start_without_database(panel, "buildnodb", tmp_path)
    engine = agent.engine
    try:
        wait_for(
            lambda: Host.objects.filter(name="buildnodb", state="up").exists(),
            60,
            f"buildnodb up\n{agent.log_tail()}",
        )
        admin = Actor(UserFactory(username="bn-admin", is_staff=True, is_superuser=True))
        tenant, other = tenants.create_tenant(admin, "buildco"), tenants.create_tenant(admin, "otherco")
        developer = UserFactory(username="bn-dev")
        tenants.add_member(admin, tenant, developer.username, Role.DEVELOPER)

        def start(name: str) -> Build:
            context = io.BytesIO(context_tar({"Dockerfile": DOCKERFILE, "hello.txt": "hi"}))
            return builds.start_build(Actor(developer), tenant, name=name, context=context)

        def ended(build: Build) -> Build:
            wait_for(
                lambda: Build.objects.get(pk=build.pk).status in ("succeeded", "failed"),
                120,
                f"build {build.pk} to end on buildnodb ({Build.objects.get(pk=build.pk).status})\n"
                f"{agent.log_tail()}",
            )
            build.refresh_from_db()
            return build

        admin_redis = redis.Redis.from_url(redis_url)
        monitor = Monitor(redis_url)  # every command Redis runs meanwhile, and its client
        build = ended(start("web:1"))
        seen = list(zip(monitor.clients, monitor.stop(), strict=False))
        assert build.host is not None and build.host.name == "buildnodb"
        assert (build.status, build.error) == ("succeeded", ""), build.output
        texts = [line["text"] for line in build.output]
        assert texts[0] == "STEP 1/3: FROM busybox" and "built-hi" in texts, texts
        assert [line["cursor"] for line in build.output] == [str(i) for i in range(1, len(texts) + 1)]
        assert build.image is not None and build.image.reference == "buildco/web:1"
        assert build.image.tenant == tenant and build.finished_at is not None
        assert build.context_archive == "" and not list((tmp_path / "test-var" / "builds").rglob("*.tar"))
        assert engine.image("buildco/web:1")  # built on the agent's own engine
        assert not Image.objects.filter(tenant=other).exists() and not Build.objects.filter(tenant=other)
        assert not [i for i in engine.images.list() if any(t.startswith("otherco/") for t in i.repo_tags)]

        # the build worker took the message from build.buildnodb as the host's own Redis user
        users = {c["addr"]: c["user"] for c in admin_redis.client_list()}
        takers = {users.get(addr, "?") for addr, command in seen if "build.buildnodb" in command}
        assert takers and takers <= {"host-buildnodb", "default"}, (takers, seen[-20:])
        pops = {users.get(a) for a, c in seen if c.startswith("BRPOP") and "build.buildnodb" in c}
        assert pops == {"host-buildnodb"}, (pops, seen[-20:])
        denied = [e for e in admin_redis.acl_log() if e.get("username") == "host-buildnodb"]
        assert denied == [], denied  # the ACL lets the agent do all it does
        assert admin_redis.llen("build.buildnodb") == 0

        # a build whose message the broker lost as it was sent: the agent's next heartbeat sends it
        def broker_down(build_id: int, queue: str) -> None:
            raise ConnectionError("Redis is down")

        with monkeypatch.context() as outage:
            outage.setattr("hostpanel.builds.dispatch.send_build", broker_down)
            lost = start("web:2")
        assert Build.objects.filter(pk=lost.pk, status="queued", dispatched_at=None).exists()
        lost = ended(lost)
        assert (lost.status, lost.error) == ("succeeded", ""), lost.output
        assert lost.image is not None and lost.image.reference == "buildco/web:2"
        assert lost.image.tenant == tenant and not Image.objects.filter(tenant=other).exists()

        text = agent.log.read_text(errors="replace")
        assert "ImproperlyConfigured" not in text and "NOPERM" not in text, agent.log_tail()  # no query
    finally:
        agent.stop()
        remove_agent_leftovers(agent)
