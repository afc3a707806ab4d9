"""End to end: ``docker build -t x .`` through the tenants' door runs the panel's builds service on
the tenant's host (a real agent, Redis and engine), then ``docker run --rm x`` runs the result;
hostile contexts are refused without a host file's content reaching the client."""

from __future__ import annotations

import http.client
import io
import json
import ssl
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hostpanel.builds.models import Build
from hostpanel.images.models import Image
from tests.hostpanel.dockerapi.conftest import Client

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.privileged]

DOCKERFILE = """\
FROM busybox AS make
RUN mkdir /out && echo built-in-stage-one > /out/greeting
FROM busybox
COPY --from=make /out/greeting /greeting
CMD ["cat", "/greeting"]
"""


def post_build(client: Client, query: str, body: bytes) -> tuple[int, str]:
    """``POST /build`` with a hand-made context (the CLI would never send these)."""
    context = ssl.create_default_context(cafile=str(client.directory / "ca.pem"))
    context.load_cert_chain(client.directory / "cert.pem", client.directory / "key.pem")
    connection = http.client.HTTPSConnection("127.0.0.1", client.door.port, context=context, timeout=300)
    try:
        connection.request(
            "POST", f"/v1.44/build?{query}", body=body, headers={"Content-Type": "application/x-tar"}
        )
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def context_tar(members: list[tarfile.TarInfo], data: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for member in members:
            content = data.get(member.name)
            if content is not None:
                member.size = len(content)
            tar.addfile(member, io.BytesIO(content) if content is not None else None)
    return buffer.getvalue()


def test_docker_build_then_run_and_hostile_contexts(
    live_tenant: Callable[..., Any], docker_as: Callable[..., Client], tmp_path: Path
) -> None:
    live = live_tenant("db", "acme", "ann", "developer")
    Image.objects.get_or_create(reference="busybox:latest", defaults={"tenant": None})
    docker = docker_as(live.member, live.tenant)
    project = tmp_path / "project"
    project.mkdir()
    (project / "Dockerfile").write_text(DOCKERFILE)
    env_build = ["build", "-t", "greeter", str(project)]
    result = docker(*env_build, timeout=600)
    assert result.returncode == 0, result.stderr + result.stdout
    build = Build.objects.get(tenant=live.tenant)
    assert build.status == "succeeded" and build.reference == "acme/greeter:latest"
    assert "Successfully tagged acme/greeter:latest" in result.stdout + result.stderr
    assert "greeter" in docker.ok("images", "--format", "{{.Repository}}")
    assert docker.ok("run", "--rm", "greeter", timeout=300).strip() == "built-in-stage-one"

    # a member that climbs out of the context: refused, nothing written outside
    climb = tarfile.TarInfo("../../escaped")
    dockerfile = tarfile.TarInfo("Dockerfile")
    body = context_tar([dockerfile, climb], {"Dockerfile": b"FROM busybox\n", "../../escaped": b"x"})
    status, answer = post_build(docker, "t=climb", body)
    assert status == 200 and '"error"' in answer, answer
    assert not Image.objects.filter(reference="acme/climb:latest").exists()
    assert Build.objects.filter(tenant=live.tenant, name="climb:latest", status="failed").exists()

    # a Dockerfile that is a symlink to a host file: refused, the file's content never shown
    shadow = Path("/etc/shadow").read_text()
    secret_line = next(line for line in shadow.splitlines() if line.startswith("root:"))
    link = tarfile.TarInfo("Dockerfile")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
    status, answer = post_build(docker, "t=peek", context_tar([link], {}))
    assert secret_line not in answer and "root:" not in answer
    assert status >= 400 or '"error"' in answer, answer
    failed = Build.objects.get(tenant=live.tenant, name="peek:latest")
    assert failed.status == "failed" and "root:" not in failed.error + json.dumps(failed.output)
    assert "Dockerfile" in failed.error, failed.error
    assert not Image.objects.filter(reference="acme/peek:latest").exists()
