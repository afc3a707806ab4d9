"""The stock docker CLI against the tenants' door: identity, roles, tenant isolation, refusals.

No host agent here: the door writes the panel's state (apps, replicas placed on a host row),
which is what these tests check; tests/hostpanel/dockerapi/test_door_e2e.py runs containers.
"""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.test import Client as DjangoClient
from django.utils import timezone

from hostpanel.audit.models import AuditLog
from hostpanel.audit.services import Actor
from hostpanel.deployments.models import App, Replica
from hostpanel.dockerapi import ca
from hostpanel.dockerapi.certs import issue_certificate
from hostpanel.dockerapi.models import ClientCertificate, DockerContainer
from hostpanel.images.models import Image
from hostpanel.tenants.models import Role, Tenant
from hostpanel.tenants.services import create_token
from tests.hostpanel.dockerapi.conftest import DOCKER, Client, Door, serving, write_pems
from tests.hostpanel.factories import HostFactory, MembershipFactory, TenantFactory
from tests.stack import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def two_tenants(door: Door) -> tuple[Tenant, Tenant]:
    Image.objects.get_or_create(reference="busybox:latest", defaults={"tenant": None})
    HostFactory(name="h1")
    return TenantFactory(slug="acme"), TenantFactory(slug="bolt")


def member(tenant: Tenant, role: str = Role.DEVELOPER) -> Any:
    return MembershipFactory(tenant=tenant, role=role).user


def test_version_info_and_an_empty_ps(
    two_tenants: tuple[Tenant, Tenant], docker_as: Callable[..., Client]
) -> None:
    acme, _ = two_tenants
    docker = docker_as(member(acme), acme)
    version = docker.json("version", "--format", "{{json .Server}}")
    assert version["ApiVersion"] == "1.44"
    info = docker.json("info", "--format", "{{json .}}")
    assert info["Containers"] == 0 and "hostpanel.tenant=acme" in info["Labels"]
    assert docker.ok("ps", "-q") == ""


def test_create_inspect_ps_rm_through_the_panel(
    two_tenants: tuple[Tenant, Tenant], docker_as: Callable[..., Client]
) -> None:
    acme, _ = two_tenants
    docker = docker_as(member(acme), acme)
    container_id = docker.ok(
        "create",
        "--name",
        "web",
        "--label",
        "tier=front",
        "-e",
        "GREETING=hi",
        "--memory",
        "64m",
        "busybox",
        "sleep",
        "3600",
    ).strip()
    assert len(container_id) == 64
    app = App.objects.get(tenant=acme, name="web")  # panel state, through the panel's services
    assert app.state == App.State.STOPPED and app.docker.docker_id == container_id
    release = app.current_release
    assert release is not None
    assert (release.command, release.env, release.memory_bytes, release.replicas) == (
        ["sleep", "3600"],
        {"GREETING": "hi"},
        64 * 1024**2,
        1,
    )
    assert Replica.objects.get(app=app).host is not None  # placed by the scheduler
    assert AuditLog.objects.filter(action="app.create", tenant=acme, result="ok").exists()

    (doc,) = docker.json("inspect", "web")
    assert doc["Id"] == container_id and doc["Name"] == "/web"
    assert doc["Config"]["Labels"] == {"tier": "front"} and doc["State"]["Status"] == "created"
    assert docker.ok("inspect", "--format", "{{.Id}}", container_id[:10]).strip() == container_id
    assert docker.ok("ps", "-q") == ""  # not running
    assert (
        docker.ok("ps", "-a", "--format", "{{.Names}} {{.Status}} {{.Labels}}").strip()
        == "web Created tier=front"
    )
    assert docker.ok("ps", "-a", "-q", "--filter", "label=tier=back") == ""

    again = docker("create", "--name", "web", "busybox", "true")
    assert again.returncode != 0 and 'The container name "/web" is already in use' in again.stderr

    docker.ok("rm", "-f", "web")
    assert not App.objects.filter(tenant=acme).exists()
    assert AuditLog.objects.filter(action="app.delete", tenant=acme, result="ok").exists()
    missing = docker("container", "inspect", "web")
    assert missing.returncode != 0 and "No such container: web" in missing.stderr


def test_another_tenants_container_is_no_such_container(
    two_tenants: tuple[Tenant, Tenant], docker_as: Callable[..., Client]
) -> None:
    acme, bolt = two_tenants
    a, b = docker_as(member(acme), acme), docker_as(member(bolt), bolt)
    a_id = a.ok("create", "--name", "web", "busybox", "sleep", "3600").strip()
    b_id = b.ok("create", "--name", "web", "busybox", "sleep", "3600").strip()  # both may have `web`
    assert a_id != b_id
    assert {app.tenant.slug for app in App.objects.filter(name="web")} == {"acme", "bolt"}
    assert a.ok("ps", "-aq", "--no-trunc").split() == [a_id]
    for verb in (
        ["container", "inspect"],
        ["stop"],
        ["start"],
        ["restart"],
        ["kill"],
        ["rm", "-f"],
        ["logs"],
        ["wait"],
    ):
        result = a(*verb, b_id)
        assert result.returncode != 0 or verb == ["rm", "-f"], verb  # rm -f: a missing one is no error
        assert f"No such container: {b_id}" in result.stderr, (verb, result.stderr)
    # by a prefix of its id too
    assert f"No such container: {b_id[:12]}" in a("container", "inspect", b_id[:12]).stderr
    assert App.objects.filter(tenant=bolt, name="web", state="stopped").exists()  # untouched
    assert DockerContainer.objects.filter(tenant=bolt).count() == 1


def test_a_viewer_reads_but_cannot_write(
    two_tenants: tuple[Tenant, Tenant], docker_as: Callable[..., Client]
) -> None:
    acme, _ = two_tenants
    developer = docker_as(member(acme), acme)
    developer.ok("create", "--name", "web", "busybox", "sleep", "3600")
    viewer = docker_as(member(acme, Role.VIEWER), acme)
    assert viewer.ok("ps", "-a", "--format", "{{.Names}}").strip() == "web"
    assert viewer.json("inspect", "web")[0]["Name"] == "/web"
    for args in (
        ["run", "-d", "--name", "other", "busybox", "sleep", "1"],
        ["create", "--name", "other", "busybox", "sleep", "1"],
        ["start", "web"],
        ["stop", "web"],
        ["restart", "web"],
        ["rm", "-f", "web"],
    ):
        result = viewer(*args)
        assert result.returncode != 0, args
        assert "needs the developer role" in result.stderr and "carries viewer" in result.stderr, (
            result.stderr
        )
    assert list(App.objects.filter(tenant=acme).values_list("name", flat=True)) == ["web"]
    denied = AuditLog.objects.filter(tenant=acme, result="denied")
    assert sorted(denied.values_list("action", flat=True)) == sorted(
        ["app.create", "app.create", "app.start", "app.stop", "app.restart", "app.delete"]
    )


def test_a_member_demoted_since_issue_gets_the_lower_role(
    two_tenants: tuple[Tenant, Tenant], docker_as: Callable[..., Client]
) -> None:
    acme, _ = two_tenants
    user = member(acme, Role.DEVELOPER)
    docker = docker_as(user, acme)
    user.memberships.update(role=Role.VIEWER)
    result = docker("create", "--name", "web", "busybox", "true")
    assert result.returncode != 0 and "needs the developer role" in result.stderr
    user.memberships.all().delete()
    result = docker("ps")
    assert result.returncode != 0 and "no longer a member of tenant 'acme'" in result.stderr


def test_a_revoked_certificate_is_refused(
    two_tenants: tuple[Tenant, Tenant], docker_as: Callable[..., Client]
) -> None:
    acme, _ = two_tenants
    docker = docker_as(member(acme), acme)
    docker.ok("ps")
    assert docker.issued is not None
    ClientCertificate.objects.filter(pk=docker.issued.certificate.pk).update(revoked_at=timezone.now())
    result = docker("ps")
    assert result.returncode != 0
    assert "was revoked" in result.stderr and "issue a new one" in result.stderr, result.stderr


def test_a_certificate_of_another_ca_fails_the_handshake(
    two_tenants: tuple[Tenant, Tenant], door: Door, tmp_path: Path
) -> None:
    acme, _ = two_tenants
    user = member(acme, Role.OWNER)
    # the same subject the panel would write, signed by a CA of the attacker's; the door's CA
    # is trusted so the client side of the handshake succeeds
    from django.conf import settings

    door_ca = (Path(settings.HOSTPANEL_DOCKER_API_DIR) / ca.CA_CERT).read_text()
    forged = ca.issue_client(
        ca.load_or_create(tmp_path / "evil"), username=user.username, tenant="acme", role="owner", days=1
    )
    directory = tmp_path / "forger"
    write_pems(directory, door_ca, forged.cert_pem, forged.key_pem)
    result = Client(door, directory)("ps")
    # refused in the handshake: no HTTP answer at all (the client sees a TLS alert or a closed pipe)
    assert result.returncode != 0 and "Error response from daemon" not in result.stderr, result.stderr
    assert "error during connect" in result.stderr or "tls" in result.stderr.lower(), result.stderr
    # and with no certificate at all
    bare = tmp_path / "bare"
    write_pems(bare, door_ca, "", "")
    (bare / "cert.pem").unlink()
    (bare / "key.pem").unlink()
    result = Client(door, bare)("ps")
    assert result.returncode != 0 and "Error response from daemon" not in result.stderr, result.stderr


FORBIDDEN = [
    (["--privileged"], "Privileged"),
    (["--cap-add", "SYS_ADMIN"], "CapAdd"),
    (["--device", "/dev/null:/dev/x"], "Devices"),
    (["--pid", "host"], "PidMode"),
    (["--ipc", "host"], "IpcMode"),
    (["--uts", "host"], "UTSMode"),
    (["--network", "host"], "NetworkMode"),
    (["-v", "/etc:/host-etc"], "Binds"),
    (["--mount", "type=bind,source=/etc,target=/x"], "Mounts"),
    (["--security-opt", "seccomp=unconfined"], "SecurityOpt"),
    (["--security-opt", "apparmor=unconfined"], "SecurityOpt"),
    (["--user", "70000"], "User"),
    (["--sysctl", "net.ipv4.ip_forward=1"], "Sysctls"),
    (["--cgroup-parent", "/"], "CgroupParent"),
    (["--userns", "host"], "UsernsMode"),
]


@pytest.mark.parametrize(("flags", "field"), FORBIDDEN, ids=[f for _, f in FORBIDDEN])
def test_every_forbidden_field_is_refused_naming_it_and_creates_nothing(
    two_tenants: tuple[Tenant, Tenant], docker_as: Callable[..., Client], flags: list[str], field: str
) -> None:
    acme, _ = two_tenants
    docker = docker_as(member(acme, Role.OWNER), acme)
    result = docker("create", "--name", "evil", *flags, "busybox", "true")
    assert result.returncode != 0
    assert field in result.stderr and "refused" in result.stderr, result.stderr
    assert not App.objects.exists() and not DockerContainer.objects.exists()
    entry = AuditLog.objects.get(tenant=acme, action="app.create")
    assert entry.result == "denied" and field in entry.message


def test_the_quota_applies_when_a_container_starts_in_dockers_words(
    two_tenants: tuple[Tenant, Tenant], docker_as: Callable[..., Client]
) -> None:
    acme, _ = two_tenants
    acme.quota.memory_bytes = 100 * 1024**2
    acme.quota.save()
    docker = docker_as(member(acme), acme)
    result = docker("run", "-d", "--name", "big", "--memory", "200m", "busybox", "sleep", "60")
    assert result.returncode != 0
    assert "Error response from daemon: over the quota of tenant 'acme'" in result.stderr, result.stderr
    assert "memory" in result.stderr
    app = App.objects.get(tenant=acme, name="big")
    assert app.state == App.State.STOPPED  # created, as dockerd leaves a container whose start failed
    assert AuditLog.objects.filter(action="app.start", tenant=acme, result="denied").exists()


def test_a_panel_token_in_http_headers_identifies_the_member_when_allowed(
    two_tenants: tuple[Tenant, Tenant], docker_as: Callable[..., Client], settings: Any, tmp_path: Path
) -> None:
    acme, _ = two_tenants
    user = member(acme, Role.VIEWER)
    docker_as(user, acme).ok("ps")  # makes the CA
    _, secret = create_token(Actor(user=user), acme, "ci")
    door_ca = (Path(settings.HOSTPANEL_DOCKER_API_DIR) / ca.CA_CERT).read_text()
    directory = tmp_path / "token-client"
    write_pems(directory, door_ca, "", "")
    for name in ("cert.pem", "key.pem"):
        (directory / name).unlink()

    def with_header(value: str) -> None:
        config = {"HttpHeaders": {"Authorization": value}}
        (directory / "config" / "config.json").write_text(json.dumps(config))

    with_header(f"Token {secret}")
    settings.HOSTPANEL_DOCKER_API_TOKENS = True
    with serving() as token_door:
        client = Client(token_door, directory)
        assert client.ok("ps", "-a", "-q") == ""
        result = client("create", "--name", "web", "busybox", "true")  # a viewer's token only reads
        assert "needs the developer role" in result.stderr and "API token 'ci'" in result.stderr
        with_header("Token not-a-token")
        assert "invalid, expired or revoked API token" in client("ps").stderr
    settings.HOSTPANEL_DOCKER_API_TOKENS = False
    with serving() as strict_door:  # the default: a certificate or nothing
        with_header(f"Token {secret}")
        result = Client(strict_door, directory)("ps")
        assert result.returncode != 0 and "Error response from daemon" not in result.stderr


def raw(client: Client, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    """One request with the client's certificate, answered as (status, parsed JSON)."""
    context = ssl.create_default_context(cafile=str(client.directory / "ca.pem"))
    context.load_cert_chain(client.directory / "cert.pem", client.directory / "key.pem")
    connection = http.client.HTTPSConnection("127.0.0.1", client.door.port, context=context, timeout=30)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


def test_hostile_requests_get_a_clear_4xx_and_change_nothing(
    two_tenants: tuple[Tenant, Tenant], docker_as: Callable[..., Client]
) -> None:
    acme, bolt = two_tenants
    Image.objects.create(reference="bolt/secret:1", tenant=bolt)
    docker = docker_as(member(acme, Role.OWNER), acme)
    status, answer = raw(docker, "POST", "/v1.44/containers/create?name=x", b"{not json")
    assert status == 400 and "not valid JSON" in answer["message"]
    status, answer = raw(docker, "POST", "/v1.44/containers/create?name=../../etc", b'{"Image": "busybox"}')
    assert status == 400 and "Invalid container name" in answer["message"]
    body = json.dumps({"Image": "busybox", "HostConfig": {"Privileged": True}}).encode()
    status, answer = raw(docker, "POST", "/v1.44/containers/create?name=x", body)
    assert status == 403 and "HostConfig.Privileged" in answer["message"]
    status, answer = raw(docker, "GET", "/v1.44/containers/x/../../json")
    assert status == 404
    # another tenant's image is not there for this tenant
    result = docker("create", "--name", "thief", "bolt/secret:1")
    assert result.returncode != 0 and "Unable to find image 'bolt/secret:1'" in result.stderr, result.stderr
    assert not App.objects.exists() and not DockerContainer.objects.exists()


def test_a_container_made_through_the_door_is_an_app_on_the_dashboard(
    two_tenants: tuple[Tenant, Tenant], docker_as: Callable[..., Client]
) -> None:
    acme, _ = two_tenants
    user = member(acme)
    docker_as(user, acme).ok("create", "--name", "web", "busybox", "sleep", "60")
    page = DjangoClient()
    page.force_login(user)
    listing = page.get("/t/acme/apps/")
    assert listing.status_code == 200 and b"web" in listing.content
    detail = page.get("/t/acme/apps/web/")
    assert detail.status_code == 200 and b"via Docker API: web" in detail.content


def test_the_context_command_the_page_shows_works_as_given(
    two_tenants: tuple[Tenant, Tenant], door: Door, settings: Any, tmp_path: Path
) -> None:
    acme, _ = two_tenants
    settings.HOSTPANEL_DOCKER_API_PORT = door.port  # the port the command names
    issued = issue_certificate(Actor(user=member(acme)), acme, "laptop")
    home = tmp_path / "home"
    write_pems(home / ".docker" / "hostpanel" / "acme", issued.ca_pem, issued.cert_pem, issued.key_pem)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "DOCKER_CONFIG": str(home / ".docker")}
    command = issued.context_command()
    assert command.startswith('docker context create hostpanel-acme --docker "host=tcp://127.0.0.1:')
    shell = command.replace("docker ", f"{DOCKER} ", 1)
    made = subprocess.run(["sh", "-c", shell], env=env, capture_output=True, text=True, check=False)
    assert made.returncode == 0, made.stderr
    listed = subprocess.run(
        [DOCKER, "--context", "hostpanel-acme", "info", "--format", "{{json .Labels}}"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert listed.returncode == 0 and "hostpanel.tenant=acme" in listed.stdout, listed.stderr


def test_a_wait_the_client_left_behind_ends_its_thread(
    two_tenants: tuple[Tenant, Tenant], docker_as: Callable[..., Client]
) -> None:
    acme, _ = two_tenants
    docker = docker_as(member(acme), acme)
    docker.ok("create", "--name", "web", "busybox", "sleep", "60")
    before = set(threading.enumerate())  # threads of earlier calls may still end meanwhile: compare sets
    context = ssl.create_default_context(cafile=str(docker.directory / "ca.pem"))
    context.load_cert_chain(docker.directory / "cert.pem", docker.directory / "key.pem")
    connection = http.client.HTTPSConnection("127.0.0.1", docker.door.port, context=context, timeout=30)
    connection.request("POST", "/v1.44/containers/web/wait?condition=next-exit")
    assert connection.getresponse().status == 200  # the headers at once; the body when it exits
    serving = set(threading.enumerate()) - before
    assert serving  # the wait's thread, polling
    connection.close()  # as `docker run -d` leaves its wait
    wait_for(lambda: not any(t.is_alive() for t in serving), 15, "the wait's thread to end")
