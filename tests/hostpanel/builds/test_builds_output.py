"""The build's output sink (an enrolled agent's: posted to the panel's internal API, which stores and
publishes them): lines reach the row and the live stream even when the build then goes quiet."""

from __future__ import annotations

import threading

import pytest

from hostpanel.agent.remote_build import RemoteSink
from hostpanel.builds import services
from hostpanel.builds.models import Build
from hostpanel.hosts.models import Host
from hostpanel.tenants.models import Tenant
from tests.hostpanel.builds.conftest import plain
from tests.hostpanel.hosts.enrolled_hosts import EnrolledAgents
from tests.stack import wait_for

# the sink stores lines from its own thread: the tests commit for real
pytestmark = pytest.mark.django_db(transaction=True)


def test_a_line_before_a_long_silence_is_sent_without_waiting_for_the_next(
    tenant: Tenant, host: Host, published: list[dict[str, str]], agents: EnrolledAgents
) -> None:
    build = Build.objects.create(
        tenant=tenant, name="web:1", reference="acme/web:1", host=host, status="running"
    )
    sink = RemoteSink(agents.client(host), build.pk)
    try:
        sink("step", "STEP 2/3: RUN echo start; sleep 600")
        sink("stdout", "start")  # then the RUN prints nothing more for a long time
        wait_for(lambda: len(published) == 2, 30, "the pending lines to be published")
        # and stored before that, so a page loaded now finds them
        assert [line["text"] for line in Build.objects.get(pk=build.pk).output] == [
            "STEP 2/3: RUN echo start; sleep 600",
            "start",
        ]
        assert published == [
            {"cursor": "1", "stream": "step", "text": "STEP 2/3: RUN echo start; sleep 600"},
            {"cursor": "2", "stream": "stdout", "text": "start"},
        ]
    finally:
        sink.close()
    build.refresh_from_db()
    assert build.output == published
    assert not [t for t in threading.enumerate() if t.name == f"build-{build.pk}"]


def test_a_build_failed_meanwhile_keeps_its_reason_in_the_stored_output(
    tenant: Tenant, host: Host, published: list[dict[str, str]], agents: EnrolledAgents
) -> None:
    build = Build.objects.create(
        tenant=tenant, name="web:1", reference="acme/web:1", host=host, status="running"
    )
    sink = RemoteSink(agents.client(host), build.pk)
    sink("stdout", "compiling")
    services.fail_host_builds(host, services.HOST_DOWN)
    sink("stdout", "still compiling on a host thought dead")
    sink.close()
    build.refresh_from_db()
    assert build.status == "failed"
    assert plain(build.output)[-1] == {"stream": "error", "text": build.error}
