"""A real client nobody here wrote: skopeo copies an image into our registry (served by daphne) and back.

The server is the panel's ASGI app in a daphne subprocess on a free port, on
this test's (file) database, so skopeo's chunked PATCH bodies, HEAD requests
and the Docker token flow go through a real HTTP server. It serves TLS with a
throw-away self-signed certificate: skopeo (``--tls-verify=false``) tries
HTTPS first and, against plain HTTP on twisted, waits out Go's 10 s TLS
handshake timeout before it falls back, on every connection check.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.images.store import ImageStore
from engine.paths import EnginePaths
from hostpanel.images.models import Image
from hostpanel.registry.models import Manifest, Repository, Tag, Upload
from hostpanel.tenants.models import Role, Tenant
from tests.conftest import in_ci
from tests.hostpanel.registry.conftest import DELETED, BasicAuth, TokenFlow, delete_workflow, http_send
from tests.stack import free_port, shared_database_url, start_daphne, stop_process


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A key and a certificate for 127.0.0.1 (cryptography comes with daphne's twisted[tls])."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / "key.pem", directory / "cert.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def skopeo() -> str:
    path = shutil.which("skopeo")
    if path is None:
        if in_ci():
            pytest.fail("skopeo is missing; `make install` installs it (engine/host/packages.py)")
        pytest.skip("needs skopeo (`make install`)")
    return path


@pytest.fixture
def server(transactional_db: None, tmp_path: Path, settings: Any) -> Iterator[dict[str, Any]]:
    """daphne serving the panel on a free port, sharing this test's database and registry root."""
    port = free_port()
    log = tmp_path / "daphne.log"
    env = os.environ | {
        "DATABASE_URL": shared_database_url(),
        "HOSTPANEL_VAR_DIR": str(tmp_path / "var"),
        "HOSTPANEL_REGISTRY_ROOT": str(settings.HOSTPANEL_REGISTRY_ROOT),
        "HOSTPANEL_SECRET_KEY": settings.SECRET_KEY,
    }
    key, cert = _self_signed(tmp_path)
    endpoint = f"ssl:{port}:interface=127.0.0.1:privateKey={key}:certKey={cert}"
    proc = start_daphne(["-e", endpoint], env, log)
    try:
        deadline = time.monotonic() + 60
        while not _answers(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"daphne did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        yield {"address": f"127.0.0.1:{port}", "log": log}
    finally:
        stop_process(proc)


@pytest.fixture
def oci_dir(tmp_path: Path) -> Path:
    """A busybox image (the engine's bootstrap) exported as an OCI layout directory, tag busybox:latest."""
    store = ImageStore(EnginePaths(tmp_path / "engine"))
    store.paths.ensure()
    store.bootstrap_busybox()
    archive = tmp_path / "busybox.tar"
    store.export("busybox:latest", archive)
    directory = tmp_path / "oci-src"
    with tarfile.open(archive) as tar:  # our own export; the "data" filter where Python has it (3.11.4+)
        tar.extractall(directory, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    return directory


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)


def _index_digest(layout: Path) -> str:
    return str(json.loads((layout / "index.json").read_text())["manifests"][0]["digest"])


def test_skopeo_copies_into_the_registry_and_back_with_digests_unchanged(
    skopeo: str, server: dict[str, Any], oci_dir: Path, tmp_path: Path, token_for: Any, globex: Tenant
) -> None:
    acme = Tenant.objects.get_or_create(slug="acme")[0]
    creds = f"anyone:{token_for(acme, Role.DEVELOPER)}"
    address = server["address"]
    source_digest = _index_digest(oci_dir)

    # --preserve-digests: skopeo would otherwise gzip the engine's uncompressed layer on the way
    pushed = _run(
        skopeo, "copy", "--preserve-digests", "--dest-tls-verify=false", "--dest-creds", creds,
        f"oci:{oci_dir}:busybox:latest", f"docker://{address}/acme/tools/busybox:1",
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    manifest = Manifest.objects.get(repository__name="acme/tools/busybox")
    assert manifest.digest == source_digest
    assert Tag.objects.get(repository__name="acme/tools/busybox", name="1").manifest == manifest
    assert Image.objects.get(reference="acme/tools/busybox:1").tenant == acme
    assert not Upload.objects.exists()  # every upload finished and was cleaned up

    inspected = _run(
        skopeo, "inspect", "--tls-verify=false", "--creds", creds, f"docker://{address}/acme/tools/busybox:1"
    )
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["Digest"] == source_digest

    back = tmp_path / "oci-back"
    pulled = _run(
        skopeo, "copy", "--preserve-digests", "--dest-oci-accept-uncompressed-layers",
        "--src-tls-verify=false", "--src-creds", creds,
        f"docker://{address}/acme/tools/busybox:1", f"oci:{back}:copy",
    )  # fmt: skip
    assert pulled.returncode == 0, pulled.stderr
    assert _index_digest(back) == source_digest
    for blob in (oci_dir / "blobs" / "sha256").iterdir():
        assert (back / "blobs" / "sha256" / blob.name).read_bytes() == blob.read_bytes()

    # skopeo spoke the Docker token flow: 401 with a Bearer challenge, then /v2/token with the API token
    access_log = server["log"].read_text(errors="replace")
    assert "/v2/token" in access_log

    tags = _run(
        skopeo, "list-tags", "--tls-verify=false", "--creds", creds, f"docker://{address}/acme/tools/busybox"
    )
    assert tags.returncode == 0, tags.stderr
    assert json.loads(tags.stdout)["Tags"] == ["1"]

    # the same client, the same token, another tenant's namespace: refused, nothing stored
    intruder = _run(
        skopeo, "copy", "--dest-tls-verify=false", "--dest-creds", creds,
        f"oci:{oci_dir}:busybox:latest", f"docker://{address}/globex/busybox:1",
    )  # fmt: skip
    assert intruder.returncode != 0
    assert not Repository.objects.filter(name__startswith="globex/").exists()
    stolen = _run(
        skopeo, "inspect", "--tls-verify=false", "--creds", f"anyone:{token_for(globex, Role.OWNER)}",
        f"docker://{address}/acme/tools/busybox:1",
    )  # fmt: skip
    assert stolen.returncode != 0

    deleted = _run(
        skopeo, "delete", "--tls-verify=false", "--creds", creds, f"docker://{address}/acme/tools/busybox:1"
    )
    assert deleted.returncode == 0, deleted.stderr
    assert not Manifest.objects.filter(repository__name="acme/tools/busybox").exists()
    assert not Image.objects.filter(reference="acme/tools/busybox:1").exists()


def test_skopeo_with_wrong_credentials_is_refused(skopeo: str, server: dict[str, Any], oci_dir: Path) -> None:
    Tenant.objects.get_or_create(slug="acme")
    refused = _run(
        skopeo, "copy", "--dest-tls-verify=false", "--dest-creds", "anyone:hp_wrong",
        f"oci:{oci_dir}:busybox:latest", f"docker://{server['address']}/acme/busybox:1",
    )  # fmt: skip
    assert refused.returncode != 0
    assert "unauthorized" in refused.stderr.lower() or "401" in refused.stderr
    assert not Repository.objects.exists()


def test_deletes_over_http_through_the_token_flow_and_skopeo_delete(
    skopeo: str, server: dict[str, Any], oci_dir: Path, token_for: Any, globex: Tenant
) -> None:
    acme = Tenant.objects.get_or_create(slug="acme")[0]
    developer = token_for(acme, Role.DEVELOPER)
    address = server["address"]
    send = http_send(address, ssl._create_unverified_context())

    # the conformance suite's delete workflow, one plain HTTP request per step, both ways of logging in
    flow = TokenFlow(send, "anyone", developer)
    steps = delete_workflow(flow, "acme/conformance")
    assert {k: steps[k] for k in DELETED} == DELETED, steps
    assert "repository:acme/conformance:delete" in flow.scopes_asked
    steps = delete_workflow(BasicAuth(send, "anyone", developer), "acme/conformance", "basic")
    assert {k: steps[k] for k in DELETED} == DELETED, steps

    image = f"docker://{address}/acme/tools/busybox:1"
    pushed = _run(skopeo, "copy", "--preserve-digests", "--dest-tls-verify=false", "--dest-creds",
                  f"anyone:{developer}", f"oci:{oci_dir}:busybox:latest", image)  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    # a viewer, another tenant's owner and a wrong token: skopeo delete fails and nothing goes
    for creds in (token_for(acme, Role.VIEWER), token_for(globex, Role.OWNER), "hp_wrong"):
        refused = _run(skopeo, "delete", "--tls-verify=false", "--creds", f"anyone:{creds}", image)
        assert refused.returncode != 0
        assert Tag.objects.filter(repository__name="acme/tools/busybox", name="1").exists()
    deleted = _run(skopeo, "delete", "--tls-verify=false", "--creds", f"anyone:{developer}", image)
    assert deleted.returncode == 0, deleted.stderr
    assert not Manifest.objects.filter(repository__name="acme/tools/busybox").exists()
    assert not Image.objects.filter(reference="acme/tools/busybox:1").exists()
    gone = _run(skopeo, "inspect", "--tls-verify=false", "--creds", f"anyone:{developer}", image)
    assert gone.returncode != 0 and "manifest unknown" in gone.stderr.lower()
