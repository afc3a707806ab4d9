"""End to end, as a hostile tenant: image names and builds cannot reach another tenant's images.

Two tenants on one real host agent, through the panel's API. Tenant alpha
uploads one archive holding several images, tagged inside the archive as
beta's ``beta/app:v1`` and as the base ``busybox:latest``; beta's image and the
base must not move, and beta's next container must run beta's own entrypoint.
Alpha's builds ``FROM`` and ``COPY --from`` beta's image are refused, saying what to use.
"""

from __future__ import annotations

import io
import json
import secrets
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from engine.build.model import BuildOptions
from engine.engine import Engine
from engine.images.oci import ANNOTATION_REF_NAME
from engine.images.reference import normalize_tag
from hostpanel.builds.models import Build
from hostpanel.deployments.models import Replica
from hostpanel.hosts.models import Host
from tests.hostpanel.e2e.conftest import Agent, wait_for
from tests.hostpanel.factories import UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.privileged]

BETA_SECRET = "beta-s3cret-7d41"


def tenant_token(admin: APIClient, slug: str) -> APIClient:
    """Through the API: the admin makes the tenant, its owner a token; a client with that token."""
    UserFactory(username=f"{slug}-owner")
    r = admin.post("/api/v1/tenants/", {"slug": slug, "owner": f"{slug}-owner"}, format="json")
    assert r.status_code == 201, r.content
    owner = APIClient()
    owner.force_authenticate(UserFactory(username=f"{slug}-owner"))
    r = owner.post(f"/api/v1/tenants/{slug}/tokens/", {"name": "e2e"}, format="json")
    assert r.status_code == 201
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {r.json()['secret']}")
    return client


def make_images(workdir: Path, entrypoints: dict[str, str]) -> Engine:
    """A scratch engine (not the host's) holding busybox-based images whose entrypoint echoes a word."""
    engine = Engine(root=workdir / "maker", instance=f"hpmk-{secrets.token_hex(3)}")
    engine.images.bootstrap_busybox()
    for ref, word in entrypoints.items():
        ctx = workdir / f"ctx-{word}"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(
            f'FROM busybox\nENTRYPOINT ["sh", "-c", "echo {word}; env; cat /run/secrets/* ; sleep 3600"]\n'
        )
        engine.build(BuildOptions(context=ctx, tag=ref))
    return engine


def oci_archive(engine: Engine, dest: Path, entries: list[tuple[str, str]]) -> Path:
    """One OCI layout tar holding the images ``(ref in engine, name written in the archive)``, in order."""
    blobs: dict[str, bytes] = {}
    manifests = []
    for n, (ref, written) in enumerate(entries):
        single = dest.with_name(f"single-{n}.tar")
        engine.images.export(ref, single)
        with tarfile.open(single) as tar:
            for member in tar.getmembers():
                data = tar.extractfile(member) if member.isfile() else None
                if data is not None and member.name.startswith("blobs/"):
                    blobs[member.name] = data.read()
            index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        desc = index["manifests"][0]
        desc["annotations"] = {ANNOTATION_REF_NAME: written}
        manifests.append(desc)
    files = {
        "oci-layout": b'{"imageLayoutVersion": "1.0.0"}',
        "index.json": json.dumps({"schemaVersion": 2, "manifests": manifests}).encode(),
        **blobs,
    }
    with tarfile.open(dest, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return dest


def upload(api: APIClient, slug: str, name: str, archive: Path) -> None:
    with archive.open("rb") as f:
        r = api.post(f"/api/v1/tenants/{slug}/images/", {"name": name, "archive": f}, format="multipart")
    assert r.status_code == 201, r.content


def log_texts(api: APIClient, slug: str, replica: Replica) -> list[str]:
    return [
        x["text"] for x in api.get(f"/api/v1/tenants/{slug}/containers/{replica.pk}/logs/?tail=200").json()
    ]


def running_replica(api: APIClient, slug: str, app: str, index: int, agent: Agent, word: str) -> list[str]:
    """The log of replica ``index`` of ``app`` once it printed its first line (``word`` expected)."""
    replica = wait_for(
        lambda: Replica.objects.filter(
            app__tenant__slug=slug, app__name=app, index=index, state="running"
        ).first(),
        60,
        f"{slug}/{app} replica {index} to run\n{agent.log_tail()}",
    )
    return wait_for(lambda: log_texts(api, slug, replica), 30, f"the log of {slug}/{app} #{index} ({word})")


def test_a_tenant_cannot_repoint_another_tenants_image_or_a_base_image(
    agents: Callable[[str], Agent], tmp_path: Path
) -> None:
    h1 = agents("img-h1")
    wait_for(lambda: Host.objects.filter(name="img-h1", state="up").exists(), 30, "the agent to register")
    admin = APIClient()
    admin.force_authenticate(UserFactory(username="img-admin", is_staff=True, is_superuser=True))
    alpha, beta = tenant_token(admin, "alpha"), tenant_token(admin, "beta")
    base_id = h1.engine.image("busybox:latest").id

    maker = make_images(
        tmp_path,
        {"made/beta:1": "beta-entrypoint", "made/alpha:1": "alpha-entrypoint", "made/evil:1": "PWNED"},
    )
    # beta: its own image, a secret, an app running it
    upload(
        beta, "beta", "app:v1", oci_archive(maker, tmp_path / "beta.tar", [("made/beta:1", "made/beta:1")])
    )
    r = beta.post("/api/v1/tenants/beta/secrets/", {"name": "key", "value": BETA_SECRET}, format="json")
    assert r.status_code == 201
    body = {"name": "web", "image": "beta/app:v1", "secrets": [{"name": "key", "env": "KEY"}]}
    assert beta.post("/api/v1/tenants/beta/apps/", body, format="json").status_code == 201
    assert "beta-entrypoint" in running_replica(beta, "beta", "web", 0, h1, "beta-entrypoint")
    beta_id = h1.engine.image("beta/app:v1", tenant="beta").id

    # alpha: one archive, its own image first, then images tagged as beta's and as the base busybox
    hostile = oci_archive(
        maker,
        tmp_path / "hostile.tar",
        [("made/alpha:1", "alpha/app:v1"), ("made/evil:1", "beta/app:v1"), ("made/evil:1", "busybox:latest")],
    )
    upload(alpha, "alpha", "app:v1", hostile)
    assert (
        alpha.post(
            "/api/v1/tenants/alpha/apps/", {"name": "web", "image": "alpha/app:v1"}, format="json"
        ).status_code
        == 201
    )
    assert "alpha-entrypoint" in running_replica(alpha, "alpha", "web", 0, h1, "alpha-entrypoint")

    # the host stored exactly alpha's image under alpha's name; beta's and the base did not move
    evil_id = maker.image("made/evil:1").id
    assert h1.engine.image("beta/app:v1").id == beta_id
    assert h1.engine.image("busybox:latest").id == base_id
    assert evil_id not in {i.id for i in h1.engine.images.list()}
    assert {t for i in h1.engine.images.list(tenant="alpha") for t in i.repo_tags} == {
        "busybox:latest",
        normalize_tag("alpha/app:v1"),
    }

    # beta's next container (scale up) and a new busybox app run what they should
    assert (
        beta.post("/api/v1/tenants/beta/apps/web/scale/", {"replicas": 2}, format="json").status_code == 200
    )
    second = running_replica(beta, "beta", "web", 1, h1, "beta-entrypoint")
    assert "beta-entrypoint" in second and "PWNED" not in second
    sleeper = {
        "name": "bb",
        "image": "busybox:latest",
        "command": ["sh", "-c", "echo plain-busybox; sleep 3600"],
    }
    assert beta.post("/api/v1/tenants/beta/apps/", sleeper, format="json").status_code == 201
    assert running_replica(beta, "beta", "bb", 0, h1, "plain-busybox") == ["plain-busybox"]
    alpha_logs = log_texts(alpha, "alpha", Replica.objects.get(app__tenant__slug="alpha", index=0))
    assert not any(BETA_SECRET in line for line in alpha_logs)

    # alpha's builds cannot start from or copy out of beta's image; the error says what to use
    url = "/api/v1/tenants/alpha/builds/"
    dockerfiles = {
        "from": (
            'FROM beta/app:v1\nENTRYPOINT ["cat", "/run/secrets/key"]\n',
            "FROM: no image 'beta/app:v1'",
        ),
        "copy": (
            "FROM busybox\nCOPY --from=beta/app:v1 /bin/busybox /stolen\n",
            "--from=beta/app:v1: no earlier stage",
        ),
    }
    for key, (text, error) in dockerfiles.items():
        r = alpha.post(url, {"name": f"stolen-{key}:1", "dockerfile_text": text}, format="json")
        assert r.status_code == 201, r.content
        ended = Build.objects.filter(pk=r.json()["id"], status__in=["failed", "succeeded"])
        build = wait_for(
            ended.first,
            120,
            f"the {key} build to end\n{h1.log_tail()}",
        )
        assert build.status == "failed", build.error
        shown = alpha.get(f"{url}{build.pk}/").json()["error"]
        assert error in shown and "tenant 'alpha'" in shown and "base image" in shown, shown
    assert h1.engine.image("beta/app:v1").id == beta_id and h1.engine.image("busybox:latest").id == base_id
    assert not [i for i in h1.engine.images.list(tenant="alpha") if any("stolen" in t for t in i.repo_tags)]

    # ... while its own images and the base ones build and deploy as before
    own = {
        "made:1": 'FROM busybox\nENTRYPOINT ["sh", "-c", "echo alpha-built; sleep 3600"]\n',
        "on-top:1": "FROM alpha/made:1 AS first\nFROM busybox\nCOPY --from=first /bin/busybox /copied\n"
        'ENTRYPOINT ["sh", "-c", "test -x /copied && echo alpha-built-on-top; sleep 3600"]\n',
    }
    for name, text in own.items():
        r = alpha.post(url, {"name": name, "dockerfile_text": text}, format="json")
        assert r.status_code == 201, r.content
        ended = Build.objects.filter(pk=r.json()["id"], status__in=["failed", "succeeded"])
        build = wait_for(ended.first, 120, f"the build of {name} to end\n{h1.log_tail()}")
        assert build.status == "succeeded", build.error
    body = {"name": "built", "image": "alpha/on-top:1"}
    assert alpha.post("/api/v1/tenants/alpha/apps/", body, format="json").status_code == 201
    assert running_replica(alpha, "alpha", "built", 0, h1, "alpha-built-on-top") == ["alpha-built-on-top"]
