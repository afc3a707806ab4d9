"""A host agent's side of a build, on a real engine: the image is recorded, output stored and streamed."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from engine.engine import Engine
from hostpanel.audit.services import Actor
from hostpanel.builds import services
from hostpanel.builds.models import Build
from hostpanel.images.models import Image
from hostpanel.tenants.models import Role, Tenant
from tests.hostpanel.builds.conftest import context_tar, plain
from tests.hostpanel.factories import MembershipFactory
from tests.hostpanel.hosts.enrolled_hosts import EnrolledAgents

# the output sink stores lines from its own thread: the tests commit for real
pytestmark = [
    pytest.mark.privileged,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("host"),
]


def queue_build(
    tenant: Tenant, files: dict[str, str], tmp_path: Path, settings: Any, **options: Any
) -> Build:
    settings.VAR_DIR = tmp_path
    user = MembershipFactory(tenant=tenant, role=Role.DEVELOPER).user
    context = io.BytesIO(context_tar(files, gzip=True))
    return services.start_build(Actor(user=user), tenant, name="web:1", context=context, **options)


def test_a_successful_build_becomes_the_tenants_image(
    agents: EnrolledAgents,
    engine: Engine,
    tenant: Tenant,
    settings: Any,
    tmp_path: Path,
    published: list[dict[str, str]],
) -> None:
    files = {
        "docker/Dockerfile": "FROM busybox AS make\nARG V\nRUN echo making-$V | tee /v\n"
        'FROM busybox\nCOPY --from=make /v /v\nCOPY app.sh /app.sh\nCMD ["sh", "/app.sh"]\n',
        "app.sh": "cat /v\n",
    }
    build = queue_build(
        tenant, files, tmp_path, settings, dockerfile="docker/Dockerfile", build_args={"V": "7"}
    )
    archive = Path(build.context_archive)
    build = agents.build(build, engine)
    assert (build.status, build.error) == ("succeeded", "")
    assert build.image is not None and build.image.reference == "acme/web:1"
    assert Image.objects.get(reference="acme/web:1").tenant == tenant
    assert Path(build.image.archive).is_file()  # other hosts import it like an upload
    texts = [line["text"] for line in build.output]
    assert texts[0] == "STEP 1/7: FROM busybox AS make" and "making-7" in texts
    assert published == build.output
    assert not archive.exists() and build.context_archive == ""
    assert engine.images.resolve("acme/web:1").config.cmd == ("sh", "/app.sh")


def test_a_failed_build_records_its_error_and_leaves_nothing(
    agents: EnrolledAgents,
    engine: Engine,
    tenant: Tenant,
    settings: Any,
    tmp_path: Path,
    published: list[dict[str, str]],
) -> None:
    build = queue_build(
        tenant, {"Dockerfile": "FROM busybox\nRUN echo broken >&2; exit 4\n"}, tmp_path, settings
    )
    images_before = {i.id for i in engine.images.list()}
    build = agents.build(build, engine)
    assert build.status == "failed" and build.image is None
    assert "line 2: RUN" in build.error and "exit code 4" in build.error and "broken" in build.error
    assert {"stream": "stderr", "text": "broken"} in plain(build.output)
    assert build.output[-1]["stream"] == "error"
    assert not Image.objects.filter(reference="acme/web:1").exists()
    assert {i.id for i in engine.images.list()} == images_before
    assert agents.build(build, engine).status == "failed"  # a finished build is not run again


def test_a_hostile_context_archive_is_refused(
    agents: EnrolledAgents,
    engine: Engine,
    tenant: Tenant,
    settings: Any,
    tmp_path: Path,
    published: list[dict[str, str]],
) -> None:
    build = queue_build(tenant, {"../escape": "x", "Dockerfile": "FROM busybox\n"}, tmp_path, settings)
    build = agents.build(build, engine)
    assert build.status == "failed" and "'..' component" in build.error
    assert not (tmp_path.parent / "escape").exists()
