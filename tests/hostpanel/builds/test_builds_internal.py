# ruff: noqa: F811  (the enrolled fixture is imported from tests/hostpanel/hosts/conftest.py)
"""Builds on an enrolled agent: the internal API's build door (builds/internal.py).

Every call is a hostile host's until proved otherwise: another host's build is a 404 and nothing
changes, a build that is not running takes no output, image nor end, bad bodies are a 400 naming what
was wrong, and the image lands under the build's own tenant and name. The last test runs a real build
(busybox + a RUN through crun) with the agent's own code (hostpanel/agent/remote_build.py) against
this panel, making no query of its own.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from engine.engine import Engine
from hostpanel.agent.remote_build import run_remote_build
from hostpanel.audit.services import Actor
from hostpanel.builds import services
from hostpanel.builds.models import Build
from hostpanel.hosts import enrollment
from hostpanel.hosts.models import Host
from hostpanel.images.models import Image
from hostpanel.tenants.models import Role, Tenant
from hostpanel.tenants.services import create_token
from tests.hostpanel.builds.conftest import context_tar
from tests.hostpanel.factories import MembershipFactory, TenantFactory
from tests.hostpanel.hosts.conftest import enrolled, redis_admin_url  # noqa: F401
from tests.hostpanel.hosts.enrolled_hosts import PanelClient, as_host

Hosts = dict[str, Any]
pytestmark = pytest.mark.usefixtures("host")  # busybox:latest registered
URL = "/internal/v1/builds/{}/{}"


@pytest.fixture(autouse=True)
def quiet(monkeypatch: pytest.MonkeyPatch, settings: Any, tmp_path: Path) -> list[tuple[str, list[Any]]]:
    """Builds sent to agents are not sent; lines published live are recorded; var is this test's."""
    settings.VAR_DIR = tmp_path / "var"
    monkeypatch.setattr("hostpanel.builds.dispatch.send_build", lambda build_id, queue: None)
    published: list[tuple[str, list[Any]]] = []
    monkeypatch.setattr(services, "_publish", lambda key, lines: published.append((key, lines)))
    return published


def queue(tenant: Tenant, host: str = "sa", **options: Any) -> Build:
    """A build of ``tenant`` with an uploaded context, queued on enrolled host ``host``."""
    Host.objects.exclude(name=host).update(state="down")
    user = MembershipFactory(tenant=tenant, role=Role.DEVELOPER).user
    files = {"Dockerfile": "FROM busybox\nCOPY hello.txt /hello.txt\nRUN echo built-$(cat /hello.txt)\n"}
    context = io.BytesIO(context_tar(files | {"hello.txt": "hi"}))
    build = services.start_build(Actor(user=user), tenant, name="web:1", context=context, **options)
    Host.objects.update(state="up")
    return build


def snapshot(build: Build) -> tuple[Any, ...]:
    build.refresh_from_db()
    return (build.status, build.error, build.output, build.image_id, build.context_archive, build.started_at)


def test_another_hosts_build_is_not_found_and_nothing_changes(enrolled: Hosts, tenant: Tenant) -> None:
    build = queue(tenant, "sa")
    other = as_host(enrolled["sb"][1])
    before = snapshot(build)
    for action, body in (
        ("claim", {}),
        ("output", {"lines": [{"stream": "stdout", "text": "x"}]}),
        ("finish", {"error": ""}),
    ):
        answer = other.post(URL.format(build.pk, action), body, format="json")
        assert answer.status_code == 404, (action, answer.content)
    assert other.get(URL.format(build.pk, "context")).status_code == 404
    assert (
        other.post(URL.format(build.pk, "image"), b"tar", content_type="application/octet-stream").status_code
        == 404
    )
    assert snapshot(build) == before and before[0] == "queued"
    # once it runs on its own host, still nothing for the other one
    assert (
        as_host(enrolled["sa"][1]).post(URL.format(build.pk, "claim"), {}, format="json").status_code == 200
    )
    running = snapshot(build)
    assert other.post(URL.format(build.pk, "finish"), {"error": "x"}, format="json").status_code == 404
    assert other.get(URL.format(build.pk, "context")).status_code == 404
    assert snapshot(build) == running and running[0] == "running"


def test_no_token_nor_a_tenant_token_is_401(enrolled: Hosts, tenant: Tenant) -> None:
    build = queue(tenant, "sa")
    before = snapshot(build)
    user = MembershipFactory(tenant=tenant, role=Role.OWNER).user
    tenant_token = create_token(Actor(user=user), tenant, "ci")[1]
    for client in (APIClient(), as_host(tenant_token)):
        assert client.post(URL.format(build.pk, "claim"), {}, format="json").status_code == 401
        assert client.get(URL.format(build.pk, "context")).status_code == 401
    assert snapshot(build) == before


def test_a_revoked_host_token_is_401(enrolled: Hosts, tenant: Tenant) -> None:
    build = queue(tenant, "sa")
    before = snapshot(build)
    enrollment.revoke(None, "sa")
    assert (
        as_host(enrolled["sa"][1]).post(URL.format(build.pk, "claim"), {}, format="json").status_code == 401
    )
    assert snapshot(build) == before


def test_a_build_not_running_takes_no_output_image_nor_end(enrolled: Hosts, tenant: Tenant) -> None:
    build = queue(tenant, "sa")
    sa = as_host(enrolled["sa"][1])
    line = {"lines": [{"stream": "stdout", "text": "x"}]}
    before = snapshot(build)
    assert sa.post(URL.format(build.pk, "output"), line, format="json").status_code == 409  # queued
    assert sa.post(URL.format(build.pk, "finish"), {"error": ""}, format="json").status_code == 409
    assert (
        sa.post(URL.format(build.pk, "image"), b"t", content_type="application/octet-stream").status_code
        == 409
    )
    assert snapshot(build) == before
    assert not Image.objects.filter(tenant=tenant).exists()  # the 409 upload stored nothing
    assert sa.post(URL.format(build.pk, "claim"), {}, format="json").status_code == 200
    assert sa.post(URL.format(build.pk, "claim"), {}, format="json").status_code == 409  # once
    # failed meanwhile (its host marked down): it stays failed
    services.fail_host_builds(Host.objects.get(name="sa"), services.HOST_DOWN)
    failed = snapshot(build)
    assert failed[0] == "failed"
    assert sa.post(URL.format(build.pk, "output"), line, format="json").status_code == 409
    assert sa.post(URL.format(build.pk, "finish"), {"error": ""}, format="json").status_code == 409
    assert sa.post(URL.format(build.pk, "finish"), {"error": "x"}, format="json").status_code == 409
    image = sa.post(URL.format(build.pk, "image"), b"t", content_type="application/octet-stream")
    assert image.status_code == 409 and b"not running" in image.content
    assert not Image.objects.filter(tenant=tenant).exists()
    assert snapshot(build) == failed


def test_succeeded_needs_the_image_first(enrolled: Hosts, tenant: Tenant) -> None:
    build = queue(tenant, "sa")
    sa = as_host(enrolled["sa"][1])
    assert sa.post(URL.format(build.pk, "claim"), {}, format="json").status_code == 200
    answer = sa.post(URL.format(build.pk, "finish"), {"error": ""}, format="json")
    assert answer.status_code == 409 and b"upload its image" in answer.content
    assert snapshot(build)[0] == "running"


@pytest.mark.parametrize(
    ("action", "body", "named"),
    [
        ("output", {"lines": [{"stream": "stdout", "text": "x", "cursor": "9"}]}, "unknown field"),
        ("output", {"lines": [{"stream": "sideways", "text": "x"}]}, "stream"),
        ("output", {"lines": [{"stream": "stdout", "text": 5}]}, "text"),
        ("output", {"lines": [{"stream": "stdout", "text": "x" * 20000}]}, "text"),
        ("output", {"lines": [{"stream": "stdout", "text": "x"}] * 501}, "lines"),
        ("output", {"lines": []}, "lines"),
        ("output", {"lines": "x", "more": 1}, "unknown field"),
        ("finish", {"error": "x" * 5000}, "error"),
        ("finish", {"error": 3}, "error"),
        ("finish", {"status": "succeeded", "error": ""}, "unknown field"),
        ("claim", {"reference": "other/evil:1"}, "unknown field"),
    ],
)
def test_bad_bodies_are_400_naming_what_was_wrong(
    enrolled: Hosts, tenant: Tenant, action: str, body: dict[str, Any], named: str
) -> None:
    build = queue(tenant, "sa")
    sa = as_host(enrolled["sa"][1])
    if action != "claim":
        assert sa.post(URL.format(build.pk, "claim"), {}, format="json").status_code == 200
    before = snapshot(build)
    answer = sa.post(URL.format(build.pk, action), body, format="json")
    assert answer.status_code == 400, answer.content
    assert named in answer.content.decode()
    assert snapshot(build) == before


def test_an_image_body_that_is_empty_or_too_large_is_400(
    enrolled: Hosts, tenant: Tenant, settings: Any
) -> None:
    build = queue(tenant, "sa")
    sa = as_host(enrolled["sa"][1])
    assert sa.post(URL.format(build.pk, "claim"), {}, format="json").status_code == 200
    before = snapshot(build)
    answer = sa.post(URL.format(build.pk, "image"), b"", content_type="application/octet-stream")
    assert answer.status_code == 400 and b"Content-Length" in answer.content
    answer = sa.generic(
        "POST", URL.format(build.pk, "image"), b"x", "application/octet-stream", CONTENT_LENGTH=str(2**62)
    )
    assert answer.status_code == 400 and b"Content-Length" in answer.content
    assert snapshot(build) == before and not Image.objects.filter(tenant=tenant).exists()


@pytest.mark.django_db(transaction=True)  # published once the lines are committed
def test_output_is_stored_numbered_and_published(enrolled: Hosts, tenant: Tenant, quiet: list[Any]) -> None:
    build = queue(tenant, "sa")
    sa = as_host(enrolled["sa"][1])
    assert sa.post(URL.format(build.pk, "claim"), {}, format="json").status_code == 200
    for text in ("one", "two"):
        body = {"lines": [{"stream": "stdout", "text": text}]}
        assert sa.post(URL.format(build.pk, "output"), body, format="json").status_code == 200
    build.refresh_from_db()
    assert build.output == [
        {"cursor": "1", "stream": "stdout", "text": "one"},
        {"cursor": "2", "stream": "stdout", "text": "two"},
    ]
    assert [(key, lines) for key, lines in quiet] == [(str(build.pk), [line]) for line in build.output]


def test_a_directory_build_is_claimed_with_its_path_for_the_agent_to_check_again(
    enrolled: Hosts, tenant: Tenant, settings: Any, tmp_path: Path
) -> None:
    root = tmp_path / "roots"
    (root / tenant.slug / "app").mkdir(parents=True)
    settings.HOSTPANEL_BUILD_CONTEXT_ROOTS = [str(root)]
    Host.objects.exclude(name="sa").update(state="down")
    user = MembershipFactory(tenant=tenant, role=Role.DEVELOPER).user
    build = services.start_build(
        Actor(user=user),
        tenant,
        name="web:1",
        context_path=str(root / tenant.slug / "app"),
        dockerfile_text="FROM busybox\n",
    )
    claim = URL.format(build.pk, "claim")
    assert as_host(enrolled["sb"][1]).post(claim, {}, format="json").status_code == 404
    answer = as_host(enrolled["sa"][1]).post(claim, {}, format="json")
    assert answer.status_code == 200, answer.content
    spec = answer.json()
    assert (spec["context_path"], spec["git_url"], spec["context_archive"]) == (
        str((root / tenant.slug / "app").resolve()),
        "",
        False,
    )
    build.refresh_from_db()
    assert (build.status, build.error) == ("running", "")


@pytest.mark.privileged
@pytest.mark.django_db(transaction=True)
def test_the_agent_without_the_database_builds_from_an_uploaded_context(
    enrolled: Hosts, tenant: Tenant, engine: Engine, quiet: list[Any]
) -> None:
    other = TenantFactory(slug="other")
    build = queue(tenant, "sa")
    client = PanelClient(as_host(enrolled["sa"][1]))
    with CaptureQueriesContext(connection) as seen:
        error = run_remote_build(build.pk, engine, client)
    assert error == ""
    # the output sink posts from its own thread: only the main thread's queries are seen here
    assert len(seen.captured_queries) <= client.queries
    build.refresh_from_db()
    assert (build.status, build.error) == ("succeeded", ""), build.output
    texts = [line["text"] for line in build.output]
    assert texts[0] == "STEP 1/3: FROM busybox" and "built-hi" in texts
    assert [line["cursor"] for line in build.output] == [str(i) for i in range(1, len(texts) + 1)]
    assert build.image is not None and build.image.reference == "acme/web:1" and build.image.tenant == tenant
    assert not Image.objects.filter(tenant=other).exists()
    assert build.context_archive == "" and build.finished_at is not None
    assert [line for _, lines in quiet for line in lines] == build.output
