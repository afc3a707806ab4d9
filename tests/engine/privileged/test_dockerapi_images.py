"""The operator's Docker API, images: the stock docker CLI and docker-py list, inspect, tag, remove,
prune, build (classic builder, multi-stage), pull and push against a real registry; hostile build
contexts are refused without reading the host's files."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import socket
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from engine.build.model import ContextLimits
from engine.dockerapi import build, system
from engine.dockerapi.http import Router, UnixServer, serve_in_thread
from engine.engine import Engine
from engine.errors import ImageNotFound
from engine.images.model import Image
from engine.runtime.model import ContainerSpec
from tests.engine.privileged.dockerapi_clients import DockerCLI, operator_api
from tests.engine.privileged.test_registry_support import distribution_registry

pytestmark = pytest.mark.privileged

MULTI_STAGE = """\
FROM busybox AS b
RUN echo made-in-stage-b > /msg
FROM busybox
ARG GREETING=unset
COPY --from=b /msg /msg
COPY hello.txt /hello.txt
RUN echo "$GREETING" > /greeting
LABEL from.dockerfile=yes
CMD ["cat", "/msg", "/hello.txt", "/greeting"]
"""


@pytest.fixture()
def api(engine: Engine, tmp_path: Path) -> Iterator[DockerCLI]:
    with operator_api(engine, tmp_path) as cli:
        yield cli


@pytest.fixture()
def client(api: DockerCLI) -> Iterator[docker.DockerClient]:
    c = docker.DockerClient(base_url=f"unix://{api.socket}", version="auto")
    yield c
    c.close()


def _context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(MULTI_STAGE)
    (ctx / "hello.txt").write_text("hello from the context\n")
    return ctx


def _tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    buf.seek(0)
    return buf


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _link(name: str, target: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, b""


def _shadow_secrets() -> list[str]:
    """The password fields of /etc/shadow that are real values (what a leak would show)."""
    fields = [line.split(":")[1] for line in Path("/etc/shadow").read_text().splitlines() if ":" in line]
    return [f for f in fields if len(f) > 2]


def _scratch_dirs(engine: Engine) -> list[str]:
    tmp = engine.paths.tmp
    return sorted(p.name for p in tmp.iterdir() if "docker-build" in p.name) if tmp.exists() else []


def test_images_inspect_history_tag_rmi_prune(engine: Engine, busybox: Image, api: DockerCLI) -> None:
    listed = api.ok("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
    assert f"busybox:latest {busybox.short_id}" in listed

    data = json.loads(api.ok("image", "inspect", "busybox"))[0]
    assert data["Id"] == busybox.id
    assert data["Config"]["Cmd"] == ["sh"]
    assert data["RootFS"]["Layers"] == list(busybox.layers)
    assert data["Size"] == busybox.size
    assert "hpctl image bootstrap busybox" in api.ok("history", "--no-trunc", "busybox")

    api.ok("tag", "busybox", "team/box:v1")
    assert engine.image("team/box:v1").id == busybox.id
    assert api.ok("images", "--format", "{{.Repository}}:{{.Tag}}", "team/*") == "team/box:v1\n"
    assert api.ok("images", "--format", "{{.Repository}}:{{.Tag}}", "busybox:latest") == "busybox:latest\n"
    assert api.ok("images", "-q", "-f", "label=nope") == ""
    assert "invalid filter 'until'" in api.fails("images", "-f", "until=1h")
    assert "team/box" in api.ok("images")
    assert "Untagged: team/box:v1" in api.ok("rmi", "team/box:v1")
    with pytest.raises(ImageNotFound):
        engine.image("team/box:v1")
    assert "No such image: nothing:here" in api.fails("rmi", "nothing:here")
    assert "No such image" in api.fails("image", "inspect", "nothing:here")

    # an image a container uses is refused (409), and kept by prune -a
    api.ok("tag", "busybox", "used:1")
    api.ok("rmi", "busybox")  # untags only: used:1 still names the image
    container = engine.create(ContainerSpec(image="used:1", command=("true",)))
    err = api.fails("rmi", "used:1")
    assert "used by a container" in err
    assert engine.image("used:1").id == busybox.id
    api.ok("image", "prune", "-a", "-f")
    assert engine.image("used:1").id == busybox.id
    engine.remove(container.id)

    assert "deleted: " + busybox.id in api.ok("image", "prune", "-a", "-f")
    assert engine.images.list() == []


def test_build_multi_stage_classic_builder(
    engine: Engine, busybox: Image, api: DockerCLI, tmp_path: Path
) -> None:
    ctx = _context(tmp_path)
    out = api.ok(
        "build",
        "-t",
        "multi:1",
        "-t",
        "multi:also",
        "--label",
        "from.cli=yes",
        "--build-arg",
        "GREETING=hi there",
        str(ctx),
        env={"DOCKER_BUILDKIT": "0"},
    )
    image = engine.image("multi:1")
    assert f"Successfully built {image.short_id}" in out
    assert "Successfully tagged multi:1" in out and "Successfully tagged multi:also" in out
    assert engine.image("multi:also").id == image.id
    labels = json.loads(api.ok("image", "inspect", "-f", "{{json .Config.Labels}}", "multi:1"))
    assert labels == {"from.dockerfile": "yes", "from.cli": "yes"}
    assert api.ok("run", "--rm", "multi:1") == "made-in-stage-b\nhello from the context\nhi there\n"

    # without DOCKER_BUILDKIT the CLI (no buildx plugin, no BuildKit announced) falls back to it too
    out = api.ok("build", "-q", "-t", "multi:2", "--target", "b", str(ctx))
    first = engine.image("multi:2")
    assert first.id in out
    assert _scratch_dirs(engine) == []

    # rebuilt (without the cache, with a label), multi:2 moves to a new image: the old one is dangling
    api.ok("build", "--no-cache", "--label", "rebuilt=yes", "-t", "multi:2", "--target", "b", str(ctx))
    assert engine.image("multi:2").id != first.id
    assert api.ok("images", "-q", "--no-trunc", "-f", "dangling=true").split() == [first.id]
    assert "<none>" in api.ok("images")
    assert f"deleted: {first.id}" in api.ok("image", "prune", "-f")
    assert engine.image("multi:1").id == image.id and engine.image("multi:2").id != first.id

    # no -t: the image is kept untagged (dangling), as docker does
    before = {i.id for i in engine.images.list()}
    out = api.ok("build", "-q", "--label", "untagged=yes", str(ctx))
    (untagged,) = [i for i in engine.images.list() if i.id not in before]
    assert untagged.repo_tags == () and untagged.id in out and untagged.config.labels["untagged"] == "yes"
    assert untagged.id in api.ok("images", "-q", "--no-trunc", "-f", "dangling=true").split()

    # a failing RUN: the CLI fails with the step's output, nothing is tagged
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo about-to-fail && exit 3\n")
    proc = api.run("build", "-t", "broken:1", str(ctx), env={"DOCKER_BUILDKIT": "0"})
    assert proc.returncode != 0
    assert "about-to-fail" in proc.stdout + proc.stderr
    with pytest.raises(ImageNotFound):
        engine.image("broken:1")
    assert _scratch_dirs(engine) == []


def test_build_refuses_options_it_cannot_honour(busybox: Image, api: DockerCLI, tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    err = api.fails("build", "--network", "host", "-t", "x:1", str(ctx), env={"DOCKER_BUILDKIT": "0"})
    assert "networkmode='host' is not allowed" in err
    err = api.fails("build", "-m", "64m", "-t", "x:1", str(ctx), env={"DOCKER_BUILDKIT": "0"})
    assert "memory" in err and "not supported" in err


@pytest.mark.parametrize(
    ("members", "dockerfile", "expected"),
    [
        ([_file("Dockerfile", b"FROM busybox\n"), _file("../escaped", b"x")], "Dockerfile", ".."),
        ([_link("Dockerfile", "/etc/shadow")], "Dockerfile", "Dockerfile"),
        ([_link("Dockerfile", "{secret}")], "Dockerfile", "Dockerfile"),
        ([_link("Dockerfile", "../../../../../../etc/shadow")], "Dockerfile", "Dockerfile"),
        (
            [_file("Dockerfile", b"FROM busybox\nCOPY secret /secret\n"), _link("secret", "/etc/shadow")],
            "Dockerfile",
            "secret",
        ),
        (
            [_file("Dockerfile", b"FROM busybox\nCOPY secret /secret\n"), _link("secret", "{secret}")],
            "Dockerfile",
            "secret",
        ),
        ([_file("Dockerfile", b"FROM busybox\n")], "../../etc/shadow", "inside the build context"),
    ],
    ids=[
        "dotdot-member",
        "dockerfile-shadow-link",
        "dockerfile-secret-link",
        "dockerfile-rel-link",
        "copy-shadow-link",
        "copy-secret-link",
        "dockerfile-param",
    ],
)
def test_hostile_build_contexts_are_refused(
    engine: Engine,
    busybox: Image,
    client: docker.DockerClient,
    tmp_path: Path,
    members: list[tuple[tarfile.TarInfo, bytes]],
    dockerfile: str,
    expected: str,
) -> None:
    secret = tmp_path / "host-secret"
    marker = f"HOST-SECRET-{os.getpid()}-{id(members)}"
    secret.write_text(f"FROM busybox\nLABEL leaked={marker}\n")  # a valid Dockerfile, if it were read
    for info, _data in members:
        info.linkname = info.linkname.replace("{secret}", str(secret))
    stream = client.api.build(
        fileobj=_tar(members), custom_context=True, tag="hostile:1", dockerfile=dockerfile, decode=True
    )
    try:  # refused before the build starts (a 400), or as the stream's error message
        messages = list(stream)
        errors = [m["error"] for m in messages if "error" in m]
        text = json.dumps(messages)
    except docker.errors.APIError as exc:
        assert exc.status_code == 400
        errors = [str(exc.explanation)]
        text = errors[0]
    assert errors and expected in errors[-1], text
    assert "successfully" not in text.lower()
    assert marker not in text
    for value in _shadow_secrets():
        assert value not in text
    with pytest.raises(ImageNotFound):
        engine.image("hostile:1")
    assert not (tmp_path.parent / "escaped").exists()
    assert _scratch_dirs(engine) == []


def test_push_and_pull_through_a_registry_with_login(
    engine: Engine, busybox: Image, api: DockerCLI, client: docker.DockerClient, tmp_path: Path
) -> None:
    with distribution_registry(users={"alice": "s3cret"}) as registry:
        target = f"{registry.host}/team/app:1"
        (ctx := tmp_path / "ctx").mkdir()
        (ctx / "Dockerfile").write_text('FROM busybox\nRUN echo pushed-and-pulled > /m\nCMD ["cat", "/m"]\n')
        api.ok("build", "-t", target, str(ctx), env={"DOCKER_BUILDKIT": "0"})
        built = engine.image(target)

        assert "requires authentication" in api.fails("push", target)
        err = api.fails("login", registry.host, "-u", "alice", "--password-stdin", input="wrong\n")
        assert "refused access" in err
        assert "Login Succeeded" in api.ok(
            "login", registry.host, "-u", "alice", "--password-stdin", input="s3cret\n"
        )

        out = api.ok("push", target)
        assert f"1: digest: {built.digest}" in out

        api.ok("rmi", target)
        api.ok("image", "prune", "-a", "-f")
        with pytest.raises(ImageNotFound):
            engine.image(built.id)
        out = api.ok("pull", target)
        assert "Downloaded newer image" in out and built.digest in out
        assert engine.image(target).id == built.id
        assert api.ok("run", "--rm", target) == "pushed-and-pulled\n"
        assert "no image" in api.fails("pull", f"{registry.host}/team/nope:1")

        # docker-py with explicit credentials (X-Registry-Auth), and without them
        client.images.get(target).tag(f"{registry.host}/team/copy", "2")
        auth = {"username": "alice", "password": "s3cret"}
        messages = list(
            client.api.push(f"{registry.host}/team/copy", "2", auth_config=auth, stream=True, decode=True)
        )
        size = engine.images.blobs.path(built.digest).stat().st_size
        assert messages[-1] == {
            "progressDetail": {},
            "aux": {"Tag": "2", "Digest": built.digest, "Size": size},
        }
        assert not [m for m in messages if "error" in m]
        with pytest.raises(docker.errors.APIError):
            client.images.pull(
                f"{registry.host}/team/copy", "2", auth_config={"username": "alice", "password": "x"}
            )
        pulled = client.images.pull(
            f"{registry.host}/team/copy", "2", auth_config={"username": "alice", "password": "s3cret"}
        )
        assert pulled.id == built.id

        # a build pulls a missing base with the CLI's logins (X-Registry-Config); --pull pulls it again
        base = f"{registry.host}/team/base:1"
        api.ok("tag", target, base)
        api.ok("push", base)
        api.ok("rmi", base)
        (ctx2 := tmp_path / "ctx2").mkdir()
        (ctx2 / "Dockerfile").write_text(f'FROM {base}\nRUN echo on-a-pulled-base > /m\nCMD ["cat", "/m"]\n')
        out = api.ok("build", "-t", "onbase:1", str(ctx2), env={"DOCKER_BUILDKIT": "0"})
        assert "Pulling from team/base" in out and f"Digest: {built.digest}" in out
        assert engine.image(base).id == built.id
        assert api.ok("run", "--rm", "onbase:1") == "on-a-pulled-base\n"
        out = api.ok("build", "--pull", "-t", "onbase:2", str(ctx2), env={"DOCKER_BUILDKIT": "0"})
        assert f"Image is up to date for {base}" in out
        api.ok("logout", registry.host)
        api.ok("rmi", base)
        assert "requires authentication" in api.fails("build", "-t", "onbase:3", str(ctx2))


def test_docker_py_images(
    engine: Engine, busybox: Image, client: docker.DockerClient, tmp_path: Path
) -> None:
    ctx = _context(tmp_path)
    image, logs = client.images.build(
        path=str(ctx), tag="py:1", labels={"via": "docker-py"}, buildargs={"GREETING": "py"}
    )
    assert image.id == engine.image("py:1").id
    assert image.labels == {"from.dockerfile": "yes", "via": "docker-py"}
    assert any("Successfully built" in entry.get("stream", "") for entry in logs)
    assert {t for i in client.images.list() for t in i.tags} >= {"busybox:latest", "py:1"}
    assert client.images.get("busybox").id == busybox.id
    assert client.images.get("py:1").history()[0]["Id"] == image.id
    image.tag("py", "2")
    assert "py:2" in client.images.get("py:1").tags
    client.images.remove("py:2")
    assert client.images.get("py:1").tags == ["py:1"]
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get("py:2")
    assert client.containers.run("py:1", remove=True) == b"made-in-stage-b\nhello from the context\npy\n"


def test_build_context_size_is_bounded(engine: Engine, busybox: Image, tmp_path: Path) -> None:
    router = Router()
    system.register(router, engine)
    build.register(router, engine, ContextLimits(context=256 * 1024))
    server = UnixServer(tmp_path / "small.sock", router)
    thread = serve_in_thread(server)
    client = docker.APIClient(base_url=f"unix://{tmp_path / 'small.sock'}", version="auto")
    try:
        big = [_file("Dockerfile", b"FROM busybox\n"), _file("blob", os.urandom(512 * 1024))]
        with pytest.raises(docker.errors.APIError) as refused:
            list(client.build(fileobj=_tar(big), custom_context=True, tag="big:1"))
        assert refused.value.status_code == 413

        # small on the wire, large once unpacked: refused while unpacking
        bomb = io.BytesIO()
        with gzip.GzipFile(fileobj=bomb, mode="wb") as gz:
            gz.write(
                _tar([_file("Dockerfile", b"FROM busybox\n"), _file("zeros", bytes(2 << 20))]).getvalue()
            )
        bomb.seek(0)
        with pytest.raises(docker.errors.APIError) as refused:
            list(client.build(fileobj=bomb, custom_context=True, encoding="gzip", tag="bomb:1"))
        assert refused.value.status_code == 400 and "unpacks to more than" in str(refused.value.explanation)

        # the server still answers on a new connection, and nothing was kept
        assert client.ping()
        assert _scratch_dirs(engine) == []
        assert [t for i in engine.images.list() for t in i.repo_tags] == ["busybox:latest"]
    finally:
        client.close()
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_build_whose_client_goes_away_is_cancelled(engine: Engine, busybox: Image, api: DockerCLI) -> None:
    dockerfile = (
        b'FROM busybox\nRUN echo "now-""sleeping" && sleep 300\n'  # the step line shows no now-sleeping
    )
    body = _tar([_file("Dockerfile", dockerfile)]).getvalue()
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(api.socket))
    head = f"POST /v1.44/build?t=slow:1 HTTP/1.1\r\nHost: docker\r\nContent-Length: {len(body)}\r\n\r\n"
    sock.sendall(head.encode() + body)
    seen = b""
    while b"now-sleeping" not in seen:
        piece = sock.recv(65536)
        assert piece, seen
        seen += piece
    assert engine.list()  # the RUN container sleeps
    sock.close()

    deadline = time.monotonic() + 60
    while (engine.list(all=True) or _scratch_dirs(engine)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert engine.list(all=True) == [] and _scratch_dirs(engine) == []
    with pytest.raises(ImageNotFound):
        engine.image("slow:1")


def test_hostile_image_names_are_refused(engine: Engine, busybox: Image, client: docker.DockerClient) -> None:
    before = engine.images.list()
    for repo in ("../../etc/passwd", "/abs/name", "team/Name", "a" * 300):
        with pytest.raises(docker.errors.APIError) as refused:
            client.api.tag("busybox", repo, "1")
        assert refused.value.status_code == 400, repo
    for name in ("../../etc/passwd", "busybox/../../x", "sha256:zz"):
        with pytest.raises(docker.errors.APIError) as refused:
            client.api.remove_image(name)
        assert refused.value.status_code in (400, 404), name
        with pytest.raises(docker.errors.APIError):
            client.api.inspect_image(name)
    with pytest.raises(docker.errors.APIError) as refused:
        client.api.pull("../../etc/passwd", tag="1")
    assert refused.value.status_code == 400
    assert engine.images.list() == before


def test_save_and_load(engine: Engine, busybox: Image, api: DockerCLI, tmp_path: Path) -> None:
    api.ok("tag", "busybox", "saved:1")
    archive = tmp_path / "saved.tar"
    api.ok("save", "-o", str(archive), "saved:1")
    with tarfile.open(archive) as tar:
        assert {"oci-layout", "index.json"} <= set(tar.getnames())
    api.ok("rmi", "saved:1", "busybox")
    assert engine.images.list() == []
    assert api.ok("load", "-i", str(archive)) == "Loaded image: saved:1\n"
    assert engine.image("saved:1").id == busybox.id
    assert "one image at a time" in api.fails("save", "-o", str(tmp_path / "two.tar"), "saved:1", "saved:1")
    assert "No such image" in api.fails("save", "-o", str(tmp_path / "none.tar"), "nothing:1")

    # a hostile archive (a layer escaping with ..) stores nothing
    layer = _tar([_file("../../escape", b"x")]).getvalue()
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [
        "sha256:" + hashlib.sha256(layer).hexdigest()]}}).encode()  # fmt: skip
    manifest = json.dumps(
        [{"Config": "config.json", "RepoTags": ["evil:1"], "Layers": ["layer.tar"]}]
    ).encode()
    evil = tmp_path / "evil.tar"
    evil.write_bytes(
        _tar(
            [_file("manifest.json", manifest), _file("config.json", config), _file("layer.tar", layer)]
        ).getvalue()
    )
    err = api.fails("load", "-i", str(evil))
    assert "escape" in err or ".." in err
    with pytest.raises(ImageNotFound):
        engine.image("evil:1")
    assert not [p for p in engine.paths.tmp.iterdir() if "docker-" in p.name]


def test_builder_prune_and_system_prune(
    engine: Engine, busybox: Image, api: DockerCLI, tmp_path: Path
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()  # stage b's RUN layer lives only in the build cache: no image keeps it
    (ctx / "Dockerfile").write_text(
        "FROM busybox AS b\nRUN head -c 100000 /dev/zero > /junk && echo m > /msg\n"
        "FROM busybox\nCOPY --from=b /msg /msg\n"
    )
    api.ok("build", "-t", "cached:1", str(ctx), env={"DOCKER_BUILDKIT": "0"})
    assert "Using cache" in api.ok("build", "-t", "cached:1", str(ctx), env={"DOCKER_BUILDKIT": "0"})
    assert engine.build_cache.entry_count("default") > 0
    assert "Total reclaimed space: 0B" not in api.ok("builder", "prune", "-f")  # the RUN layer went
    assert engine.build_cache.entry_count("default") == 0
    assert "Using cache" not in api.ok("build", "-t", "cached:1", str(ctx), env={"DOCKER_BUILDKIT": "0"})

    api.ok("network", "create", "unused")
    api.ok("tag", "busybox", "dangling:1")
    api.ok("build", "--label", "v=2", "-t", "dangling:1", str(ctx), env={"DOCKER_BUILDKIT": "0"})
    api.ok("system", "prune", "-f")
    assert engine.network_list() == []
    assert engine.image("cached:1") and engine.image("dangling:1") and engine.image("busybox")
    assert engine.build_cache.entry_count("default") == 0
