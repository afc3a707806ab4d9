"""hpctl pull/push against the panel's own registry served by daphne, cross-checked with skopeo.

Covers the Docker token flow with a tenant API token (`hpctl login`), digests
that skopeo reads back unchanged, a pull that fetches only the layers a host
lacks, cross-tenant refusals, and the host agent pulling an app's image.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from engine.cli import main as hpctl
from engine.engine import Engine
from engine.errors import EngineError, ImageNotFound
from engine.registry import AuthenticationFailed, Credentials, push
from hostpanel.agent.credentials import InternalClient
from hostpanel.agent.remote_images import ensure_image
from hostpanel.deployments.desired import image_sources
from hostpanel.hosts.models import Host
from tests.engine.privileged.test_registry_support import skopeo, write_layout
from tests.hostpanel.factories import HostFactory, UserFactory
from tests.hostpanel.registry_client.conftest import PanelRegistry


def _cli(engine: Engine, *args: str) -> int:
    return hpctl(["--root", str(engine.paths.root), "--instance", engine.instance, *args])


def test_login_push_and_skopeo_reads_identical_digests(
    panel_registry: PanelRegistry,
    client_engine: Engine,
    tenant_token: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = tenant_token("acme")
    busybox = client_engine.image("busybox")
    monkeypatch.setattr("sys.stdin", io.StringIO(token + "\n"))
    host = panel_registry.host
    assert _cli(client_engine, "login", host, "-u", "ci", "--password-stdin", "--tls-verify=false") == 0
    assert client_engine.auth_file.get(host) is not None

    target = f"{host}/acme/busybox:1"
    assert _cli(client_engine, "push", "busybox", target, "--tls-verify=false") == 0

    creds = f"--creds=ci:{token}"
    raw = skopeo("inspect", "--tls-verify=false", creds, "--raw", f"docker://{target}")
    assert "sha256:" + hashlib.sha256(raw.encode()).hexdigest() == busybox.digest
    info = json.loads(skopeo("inspect", "--tls-verify=false", creds, f"docker://{target}"))
    assert info["Digest"] == busybox.digest and info["Layers"] == list(busybox.layers)
    out = f"oci:{tmp_path / 'copy'}:x"
    skopeo(
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        f"ci:{token}",
        "--dest-oci-accept-uncompressed-layers",
        f"docker://{target}",
        out,
    )
    index = json.loads((tmp_path / "copy" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == busybox.digest

    again = client_engine.push("busybox", target, insecure=True)  # the stored login is used
    assert again.transferred == [] and sorted(again.skipped) == sorted([busybox.id, *busybox.layers])
    mounted = client_engine.push("busybox", f"{host}/acme/copy:1", insecure=True)  # cross-repository mount
    assert mounted.mounted == [busybox.id, *busybox.layers] and mounted.transferred == []

    chunked = push(
        client_engine.images,
        "busybox",
        f"{host}/acme/chunked:1",
        insecure=True,
        credentials=Credentials("ci", token),
        chunk_size=1 << 20,
        monolithic_max=1 << 20,
    )
    assert chunked.transferred == [busybox.id, *busybox.layers]  # the 2 MB layer in three PATCHes
    info = json.loads(skopeo("inspect", "--tls-verify=false", creds, f"docker://{host}/acme/chunked:1"))
    assert info["Digest"] == busybox.digest


def test_skopeo_push_then_pull_fetches_only_missing_layers(
    panel_registry: PanelRegistry, client_engine: Engine, tenant_token: Callable[..., str], tmp_path: Path
) -> None:
    token = tenant_token("acme")
    busybox = client_engine.image("busybox")
    layout = write_layout(
        tmp_path / "layout", client_engine.images, busybox, {"app/v": b"2\n"}, ["cat", "/app/v"]
    )
    target = f"{panel_registry.host}/acme/app:2"
    skopeo(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        f"ci:{token}",
        "--preserve-digests",
        f"oci:{layout.path}:{layout.ref}",
        f"docker://{target}",
    )
    report = client_engine.pull(target, insecure=True, credentials=Credentials("ci", token))
    assert report.manifest_digest == layout.manifest_digest
    assert report.skipped == list(layout.base_layers)
    assert report.transferred == [layout.config_digest, layout.new_layer]
    assert client_engine.image(target).id == layout.config_digest

    fresh = Engine(root=tmp_path / "fresh", instance="hpregf")
    full = fresh.pull(target, insecure=True, credentials=Credentials("ci", token))
    assert full.skipped == [] and set(full.transferred) == {
        layout.config_digest,
        *layout.base_layers,
        layout.new_layer,
    }


def test_other_tenants_cannot_push_or_pull(
    panel_registry: PanelRegistry, client_engine: Engine, tenant_token: Callable[..., str], tmp_path: Path
) -> None:
    acme, globex = tenant_token("acme"), tenant_token("globex")
    host = panel_registry.host
    client_engine.push("busybox", f"{host}/acme/secret:1", insecure=True, credentials=Credentials("a", acme))

    with pytest.raises(AuthenticationFailed, match=r"refused access|denied"):
        client_engine.push(
            "busybox", f"{host}/acme/evil:1", insecure=True, credentials=Credentials("g", globex)
        )
    fresh = Engine(root=tmp_path / "fresh", instance="hpregf")
    with pytest.raises((AuthenticationFailed, ImageNotFound)):
        fresh.pull(f"{host}/acme/secret:1", insecure=True, credentials=Credentials("g", globex))
    assert fresh.images.list() == [] and fresh.images.blobs.digests() == set()
    with pytest.raises(AuthenticationFailed, match="no credentials were used"):
        fresh.pull(f"{host}/acme/secret:1", insecure=True)
    with pytest.raises(ImageNotFound, match=f"'{host}/acme/secret:2'"):
        fresh.pull(f"{host}/acme/secret:2", insecure=True, credentials=Credentials("a", acme))


def _ensure_image(engine: Engine, host: Host, reference: str, tenant: str, agent_dir: Path) -> None:
    """The enrolled agent's step before starting a replica of ``tenant`` that runs ``reference``, with
    what the panel's desired document of ``host`` says of it (its registry source, its pull token;
    no upload: the panel is never asked for one)."""
    doc = image_sources(host, {reference}) | {"archives": {}}
    ensure_image(engine, InternalClient("https://unused.invalid"), doc, reference, tenant, agent_dir)


def test_host_agent_pulls_only_missing_layers_before_starting_an_app(
    panel_registry: PanelRegistry,
    client_engine: Engine,
    tenant_token: Callable[..., str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = tenant_token("acme")
    busybox = client_engine.image("busybox")
    layout = write_layout(
        tmp_path / "layout", client_engine.images, busybox, {"srv/x": b"x"}, ["cat", "/srv/x"]
    )
    client_engine.images.import_archive(layout.path, "build/app:3")
    client_engine.push(
        "build/app:3",
        f"{panel_registry.host}/acme/web:3",
        insecure=True,
        credentials=Credentials("ci", token),
    )

    host = HostFactory(name="agent-h1")
    state = tmp_path / "agent-state"
    agent_engine = Engine(root=tmp_path / "agent", instance="hprega")
    agent_engine.images.bootstrap_busybox()  # the host has the base layer already
    with caplog.at_level(logging.INFO, logger="hostpanel.agent.remote_images"):
        _ensure_image(agent_engine, host, "acme/web:3", "acme", state)
    image = agent_engine.image("acme/web:3")
    assert image.digest == layout.manifest_digest and image.id == layout.config_digest
    assert "2 blobs downloaded" in caplog.text and "1 already on this host" in caplog.text

    _ensure_image(agent_engine, host, "acme/web:3", "acme", state)  # present: nothing to do
    with pytest.raises(EngineError):  # neither in the registry nor uploaded
        _ensure_image(agent_engine, host, "acme/web:4", "acme", state)
    assert "acme/web:3" not in agent_engine.images.base_tags()  # acme's own name, not a base image
    with pytest.raises(ImageNotFound, match="for tenant 'globex'"):
        agent_engine.image("acme/web:3", tenant="globex")

    # a base image an admin published under library/: pulled for acme, a base image for every tenant
    admin = UserFactory(username="reg-admin", is_staff=True, is_superuser=True)
    hasher = PBKDF2PasswordHasher()  # the hasher of the panel under test (this process uses MD5)
    admin.password = hasher.encode("reg-admin-pw", hasher.salt())
    admin.save()
    client_engine.push(
        "busybox",
        f"{panel_registry.host}/library/tools:1",
        insecure=True,
        credentials=Credentials("reg-admin", "reg-admin-pw"),
    )
    _ensure_image(agent_engine, host, "library/tools:1", "acme", state)
    assert "library/tools:1" in agent_engine.images.base_tags()
    assert agent_engine.image("library/tools:1", tenant="globex").id == busybox.id
