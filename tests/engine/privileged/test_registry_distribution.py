"""hpctl pull/push against a real registry (CNCF distribution), cross-checked with skopeo.

Pushed images are read back by skopeo with identical digests; images skopeo
copies in are pulled and run; a pull fetches only the blobs the host lacks;
a corrupt blob in the registry stores nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.cli import main as hpctl
from engine.engine import Engine
from engine.errors import CorruptBlob, ImageNotFound
from engine.images.model import Image
from engine.images.store import ImageStore
from engine.paths import EnginePaths
from engine.registry import AuthenticationFailed, BlobProgress, Credentials, pull, push
from engine.runtime.model import ContainerSpec
from tests.engine.privileged.test_registry_support import (
    Distribution,
    distribution_registry,
    skopeo,
    write_layout,
)

pytestmark = pytest.mark.privileged


@pytest.fixture()
def registry() -> Iterator[Distribution]:
    with distribution_registry() as reg:
        yield reg


def _cli(engine: Engine, *args: str) -> int:
    return hpctl(["--root", str(engine.paths.root), "--instance", engine.instance, *args])


def _fresh_store(tmp_path: Path) -> ImageStore:
    paths = EnginePaths(tmp_path / "other-host")
    paths.ensure()
    return ImageStore(paths)


def _leftovers(store: ImageStore) -> list[str]:
    tmp = store.paths.tmp
    return sorted(p.name for p in tmp.iterdir()) if tmp.is_dir() else []


def test_push_is_read_by_skopeo_with_identical_digests(
    engine: Engine, busybox: Image, registry: Distribution, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = f"{registry.host}/team/busybox:1"
    assert _cli(engine, "push", "busybox:latest", target, "--tls-verify=false") == 0
    assert f"Pushed {target} (digest {busybox.digest})" in capsys.readouterr().out

    raw = skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{target}")
    assert "sha256:" + hashlib.sha256(raw.encode()).hexdigest() == busybox.digest
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{target}"))
    assert info["Digest"] == busybox.digest
    assert info["Layers"] == list(busybox.layers)  # uncompressed layers: blob digest == diff_id

    out = f"oci:{tmp_path / 'out'}:x"
    skopeo(
        "copy", "--src-tls-verify=false", "--dest-oci-accept-uncompressed-layers", f"docker://{target}", out
    )
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == busybox.digest
    config = json.loads((tmp_path / "out/blobs/sha256" / busybox.id.split(":")[1]).read_text())
    assert config["rootfs"]["diff_ids"] == list(busybox.layers)

    again = engine.push("busybox:latest", target, insecure=True)  # everything is there already
    assert again.transferred == [] and len(again.skipped) == 2


def test_chunked_push_and_pull_round_trip(
    busybox: Image, engine: Engine, registry: Distribution, tmp_path: Path
) -> None:
    events: list[BlobProgress] = []
    target = f"{registry.host}/team/chunked:2"
    report = push(
        engine.images,
        "busybox",
        target,
        insecure=True,
        progress=events.append,
        chunk_size=1 << 20,  # the 2 MB busybox layer goes up in three PATCHes
        monolithic_max=1 << 20,
    )
    layer = busybox.layers[0]
    assert report.transferred == [busybox.id, layer]
    layer_steps = [e.done for e in events if e.digest == layer and e.status == "transferring"]
    assert layer_steps == sorted(layer_steps) and layer_steps[-1] == engine.images.blobs.size(layer)
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{target}"))
    assert info["Digest"] == busybox.digest

    other = _fresh_store(tmp_path)
    pulled = pull(other, target, insecure=True)
    assert pulled.manifest_digest == busybox.digest and pulled.image_id == busybox.id
    assert sorted(pulled.transferred) == sorted([busybox.id, layer]) and pulled.skipped == []
    assert other.resolve(target).id == busybox.id
    assert _leftovers(other) == []


def test_skopeo_copied_image_is_pulled_with_only_new_layers_and_runs(
    engine: Engine,
    busybox: Image,
    registry: Distribution,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    layout = write_layout(
        tmp_path / "layout",
        engine.images,
        busybox,
        {"srv/hello.txt": b"hello from the registry\n"},
        ["cat", "/srv/hello.txt"],
    )
    target = f"{registry.host}/team/app:1"
    src = f"oci:{layout.path}:{layout.ref}"
    skopeo("copy", "--dest-tls-verify=false", "--preserve-digests", src, f"docker://{target}")

    events: list[BlobProgress] = []
    report = engine.pull(target, insecure=True, progress=events.append)
    # The host has busybox: only the config and the new layer cross the network.
    assert report.manifest_digest == layout.manifest_digest
    assert report.skipped == list(layout.base_layers)
    assert report.transferred == [layout.config_digest, layout.new_layer]
    assert {e.digest for e in events if e.status == "exists"} == set(layout.base_layers)
    assert not any(e.status == "transferring" and e.digest in layout.base_layers for e in events)

    image = engine.image(target)
    assert image.id == layout.config_digest and image.digest == layout.manifest_digest
    c = engine.run(ContainerSpec(image=target))
    final = engine.wait(c.id, timeout=30)
    lines = [ln.text for ln in engine.logs(c.id)]
    engine.remove(c.id)
    assert final.exit_code == 0 and lines == ["hello from the registry"]

    capsys.readouterr()
    assert _cli(engine, "pull", target, "--tls-verify=false") == 0  # a repeated pull transfers nothing
    assert "0 blobs downloaded (0B), 3 already present" in capsys.readouterr().out


def test_corrupt_blob_in_registry_stores_nothing(
    engine: Engine, busybox: Image, registry: Distribution, tmp_path: Path
) -> None:
    target = f"{registry.host}/team/bad:1"
    engine.push("busybox", target, insecure=True)
    data = registry.blob_data(busybox.layers[0])
    original = data.read_bytes()
    data.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))  # same size, one bit pattern off

    other = _fresh_store(tmp_path)
    with pytest.raises(CorruptBlob, match=rf"{busybox.layers[0]}.*nothing was stored"):
        pull(other, target, insecure=True)
    assert other.list() == []
    assert other.blobs.digests() == set()
    assert _leftovers(other) == []


def test_unknown_tag_and_repository_are_not_found(engine: Engine, registry: Distribution) -> None:
    engine.images.bootstrap_busybox()
    engine.push("busybox", f"{registry.host}/team/known:1", insecure=True)
    with pytest.raises(ImageNotFound, match=rf"no image '{registry.host}/team/known:2' in registry"):
        engine.pull(f"{registry.host}/team/known:2", insecure=True)
    with pytest.raises(ImageNotFound, match="team/unknown:1"):
        engine.pull(f"{registry.host}/team/unknown:1", insecure=True)
    assert [i.repo_tags for i in engine.images.list()] == [("busybox:latest",)]


def test_basic_auth_login_push_and_refusals(
    engine: Engine,
    busybox: Image,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with distribution_registry({"alice": "correct horse"}) as reg:
        target = f"{reg.host}/team/private:1"
        hint = rf"no credentials were used: log in with: hpctl login {reg.host}"
        with pytest.raises(AuthenticationFailed, match=hint):
            engine.push("busybox", target, insecure=True)

        monkeypatch.setattr("sys.stdin", io.StringIO("wrong\n"))
        assert _cli(engine, "login", reg.host, "-u", "alice", "--password-stdin", "--tls-verify=false") != 0
        err = capsys.readouterr().err
        assert "'alice'" in err and "wrong" not in err
        assert not engine.auth_file.path.exists()

        monkeypatch.setattr("sys.stdin", io.StringIO("correct horse\n"))
        assert _cli(engine, "login", reg.host, "-u", "alice", "--password-stdin", "--tls-verify=false") == 0
        assert stat.S_IMODE(os.stat(engine.auth_file.path).st_mode) == 0o600
        assert _cli(engine, "push", "busybox", target, "--tls-verify=false", "-q") == 0

        other = _fresh_store(tmp_path)
        with pytest.raises(AuthenticationFailed, match="credentials of user 'bob'"):
            pull(other, target, insecure=True, credentials=Credentials("bob", "x"))
        alice = Credentials("alice", "correct horse")
        assert pull(other, target, insecure=True, credentials=alice).image_id == busybox.id
        assert _cli(engine, "logout", reg.host) == 0
        assert engine.auth_file.get(reg.host) is None


def test_push_to_another_repository_mounts_known_blobs(
    engine: Engine, busybox: Image, registry: Distribution
) -> None:
    first = engine.push("busybox", f"{registry.host}/team/one:1", insecure=True)
    assert first.transferred == [busybox.id, *busybox.layers] and first.mounted == []
    second = engine.push("busybox", f"{registry.host}/team/two:1", insecure=True)
    assert second.mounted == [busybox.id, *busybox.layers]  # linked by the registry, no bytes sent
    assert second.transferred == [] and second.bytes_transferred == 0
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{registry.host}/team/two:1"))
    assert info["Digest"] == busybox.digest
