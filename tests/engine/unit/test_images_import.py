"""Importing docker-save archives, OCI layouts and rootfs tars; exporting; sharing layers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from engine.errors import CorruptBlob, InvalidArchive, InvalidReference, UnsafeArchive
from engine.images.oci import MT_LAYER_GZIP, MT_LAYER_TAR, MT_LAYER_ZSTD, host_architecture
from engine.images.store import ImageStore
from engine.paths import EnginePaths
from tests.engine.images_fixtures import (
    ArchiveImage,
    Entry,
    d,
    docker_save,
    f,
    gz,
    hard,
    oci_files,
    rootfs,
    sha,
    sym,
    tar_bytes,
    write_dir,
    write_tar,
)


@pytest.fixture()
def store(tmp_path: Path) -> ImageStore:
    paths = EnginePaths(tmp_path / "root")
    paths.ensure()
    return ImageStore(paths)


def blob_files(store: ImageStore) -> list[str]:
    return sorted(p.name for p in store.paths.blobs.iterdir())


def assert_nothing_stored(store: ImageStore) -> None:
    """No blob, no index entry, no scratch file."""
    assert blob_files(store) == []
    assert store.index.load() == []
    assert list(store.paths.tmp.iterdir()) == []
    assert list(store.paths.layers.iterdir()) == []


def manifest_of(store: ImageStore, digest: str) -> dict[str, object]:
    value = json.loads(store.blobs.read_bytes(digest))
    assert isinstance(value, dict)
    return value


# -- docker save --------------------------------------------------------------------------------


@pytest.mark.parametrize("gzip_layers", [False, True], ids=["tar", "gzip"])
def test_docker_save_import(store: ImageStore, tmp_path: Path, gzip_layers: bool) -> None:
    img = ArchiveImage(
        layers=[rootfs("base"), tar_bytes([f("app", b"app!")])],
        gzip_layers=gzip_layers,
        tags=["docker.io/library/busybox:latest", "localhost/x:y"],
    )
    archive = docker_save(tmp_path / "save.tar", [img])

    [image] = store.import_archive(archive)

    assert image.id == img.id
    assert image.repo_tags == ("busybox:latest", "localhost/x:y")
    assert image.layers == tuple(sha(la) for la in img.layers)
    assert image.size == sum(len(la) for la in img.layers)
    assert image.created == "2024-01-02T03:04:05Z"
    assert image.config.cmd == ("sh",)
    assert image.config.env == ("PATH=/usr/bin:/bin",)
    manifest = manifest_of(store, image.digest)
    layers = manifest["layers"]
    assert isinstance(layers, list)
    assert [la["mediaType"] for la in layers] == [MT_LAYER_GZIP if gzip_layers else MT_LAYER_TAR] * 2
    assert [la["digest"] for la in layers] == [sha(b) for b in img.layer_blobs()]
    # layers + config + manifest, nothing left in tmp
    assert len(blob_files(store)) == 4
    assert list(store.paths.tmp.iterdir()) == []
    assert store.resolve("busybox").id == img.id
    assert store.resolve("localhost/x:y").id == img.id
    index = json.loads(store.paths.images_index.read_text())
    refs = sorted(m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"])
    assert refs == ["busybox:latest", "localhost/x:y"]


def test_docker_save_with_several_images_and_shared_layers(store: ImageStore, tmp_path: Path) -> None:
    base = rootfs("base")
    a = ArchiveImage(layers=[base, tar_bytes([f("a", b"a")])], tags=["a:1"])
    b = ArchiveImage(layers=[base, tar_bytes([f("b", b"b")])], tags=["b:1"])
    images = store.import_archive(docker_save(tmp_path / "two.tar", [a, b]))
    assert [i.repo_tags for i in images] == [("a:1",), ("b:1",)]
    assert len(blob_files(store)) == 3 + 2 + 2


def test_reference_overrides_the_archive_tags(store: ImageStore, tmp_path: Path) -> None:
    img = ArchiveImage(layers=[rootfs()], tags=["orig:1", "orig:2"])
    [image] = store.import_archive(docker_save(tmp_path / "s.tar", [img]), "renamed:v2")
    assert image.repo_tags == ("renamed:v2",)


def test_untagged_import_is_dangling(store: ImageStore, tmp_path: Path) -> None:
    img = ArchiveImage(layers=[rootfs()])
    [image] = store.import_archive(docker_save(tmp_path / "s.tar", [img]))
    assert image.repo_tags == ()
    assert [i.id for i in store.list()] == [img.id]


def test_diff_id_mismatch_is_corrupt_and_stores_nothing(store: ImageStore, tmp_path: Path) -> None:
    good = rootfs()
    img = ArchiveImage(layers=[good], tags=["x:1"])
    img.config_override = ArchiveImage(layers=[rootfs("other")]).config  # diff_ids of another layer
    with pytest.raises(CorruptBlob) as exc:
        store.import_archive(docker_save(tmp_path / "s.tar", [img]))
    assert sha(good) in str(exc.value)
    assert_nothing_stored(store)


def test_truncated_archive_is_invalid_and_stores_nothing(store: ImageStore, tmp_path: Path) -> None:
    img = ArchiveImage(layers=[rootfs(extra=[f("big", os.urandom(200_000))])], tags=["x:1"])
    archive = docker_save(tmp_path / "s.tar", [img])
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidArchive) as exc:
        store.import_archive(archive)
    assert "truncated" in str(exc.value) or "unexpected end" in str(exc.value)
    assert_nothing_stored(store)


def test_truncated_gzip_layer_is_refused(store: ImageStore, tmp_path: Path) -> None:
    layer = rootfs(extra=[f("big", os.urandom(100_000))])
    img = ArchiveImage(layers=[layer], tags=["x:1"], gzip_layers=True)
    archive = docker_save(tmp_path / "s.tar", [img])
    # Rewrite the archive with the gzip layer cut short.
    files = {}
    with tarfile.open(archive) as tar:
        for m in tar.getmembers():
            fh = tar.extractfile(m)
            assert fh is not None
            files[m.name] = fh.read()
    for name in files:
        if name.endswith("layer.tar"):
            files[name] = files[name][:-5000]
    write_tar(archive, files)
    with pytest.raises(InvalidArchive):
        store.import_archive(archive)
    assert_nothing_stored(store)


def test_not_an_archive(store: ImageStore, tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"this is not a tar archive at all" * 100)
    with pytest.raises(InvalidArchive, match="not a readable image archive"):
        store.import_archive(junk, "x:1")
    with pytest.raises(InvalidArchive, match="does not exist"):
        store.import_archive(tmp_path / "missing.tar", "x:1")
    with pytest.raises(InvalidArchive, match="not an OCI image layout"):
        store.import_archive(tmp_path)
    assert_nothing_stored(store)


def test_zstd_layers_are_refused_with_a_hint(store: ImageStore, tmp_path: Path) -> None:
    img = ArchiveImage(layers=[rootfs()], tags=["z:1"])
    files = oci_files([img], layer_media_type=MT_LAYER_ZSTD)
    with pytest.raises(InvalidArchive, match="zstd layers are not supported; re-save with gzip"):
        store.import_archive(write_dir(tmp_path / "oci", files))
    zstd_frame = b"\x28\xb5\x2f\xfd" + b"\x00" * 64
    (tmp_path / "rootfs.tar.zst").write_bytes(zstd_frame)
    with pytest.raises(InvalidArchive, match="zstd"):
        store.import_archive(tmp_path / "rootfs.tar.zst", "z:2")
    assert_nothing_stored(store)


# -- OCI layout ---------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["dir", "tar"])
def test_oci_layout_import(store: ImageStore, tmp_path: Path, form: str) -> None:
    img = ArchiveImage(
        layers=[rootfs(), tar_bytes([f("x", b"x")])], gzip_layers=True, tags=["registry.example/team/app:1.2"]
    )
    files = oci_files([img])
    src = (
        write_dir(tmp_path / "layout", files) if form == "dir" else write_tar(tmp_path / "layout.tar", files)
    )
    [image] = store.import_archive(src)
    assert image.id == img.id
    assert image.repo_tags == ("registry.example/team/app:1.2",)
    # the OCI manifest is kept byte for byte, so its digest is preserved
    manifest_name = next(
        n
        for n, v in files.items()
        if b'"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest' in v
    )
    assert image.digest == f"sha256:{manifest_name.rsplit('/', 1)[1]}"
    assert image.size == sum(len(la) for la in img.layers)
    assert store.resolve("registry.example/team/app:1.2").layers == tuple(sha(la) for la in img.layers)


def test_oci_index_entries_become_tags(store: ImageStore, tmp_path: Path) -> None:
    img = ArchiveImage(layers=[rootfs()], tags=["app:1", "app:latest"])
    [image] = store.import_archive(write_dir(tmp_path / "oci", oci_files([img])))
    assert sorted(image.repo_tags) == ["app:1", "app:latest"]


def test_oci_image_index_picks_the_host_platform(store: ImageStore, tmp_path: Path) -> None:
    arm = ArchiveImage(
        layers=[rootfs("arm")],
        architecture="arm64" if host_architecture() != "arm64" else "s390x",
        tags=["multi:1"],
    )
    host = ArchiveImage(layers=[rootfs("host")], architecture=host_architecture(), tags=["multi:1"])
    [image] = store.import_archive(write_dir(tmp_path / "oci", oci_files([arm, host], platform_index=True)))
    assert image.id == host.id
    assert image.repo_tags == ("multi:1",)
    only_other = ArchiveImage(layers=[rootfs("x")], architecture="riscv64-none", tags=["other:1"])
    with pytest.raises(InvalidArchive, match="no linux/"):
        store.import_archive(write_dir(tmp_path / "oci2", oci_files([only_other], platform_index=True)))


def test_oci_blob_not_matching_its_digest_is_corrupt(store: ImageStore, tmp_path: Path) -> None:
    img = ArchiveImage(layers=[rootfs()], tags=["c:1"])
    files = oci_files([img])
    layer_name = f"blobs/sha256/{sha(img.layers[0]).split(':')[1]}"
    files[layer_name] = files[layer_name][:-1] + b"\x01"
    with pytest.raises(CorruptBlob, match=sha(img.layers[0])):
        store.import_archive(write_dir(tmp_path / "oci", files))
    assert_nothing_stored(store)


def test_media_type_must_match_the_content(store: ImageStore, tmp_path: Path) -> None:
    img = ArchiveImage(layers=[rootfs()], tags=["m:1"])  # plain tar announced as gzip
    with pytest.raises(InvalidArchive, match="announced as"):
        store.import_archive(write_dir(tmp_path / "oci", oci_files([img], layer_media_type=MT_LAYER_GZIP)))
    assert_nothing_stored(store)


# -- rootfs tar ---------------------------------------------------------------------------------


def test_rootfs_tar_import(store: ImageStore, tmp_path: Path) -> None:
    layer = rootfs()
    (tmp_path / "rootfs.tar").write_bytes(layer)
    with pytest.raises(InvalidReference, match="hpctl image import"):
        store.import_archive(tmp_path / "rootfs.tar")
    [image] = store.import_archive(tmp_path / "rootfs.tar", "mine")
    assert image.repo_tags == ("mine:latest",)
    assert image.layers == (sha(layer),)
    assert image.config.cmd == ("sh",)
    assert any(e.startswith("PATH=") for e in image.config.env)
    assert image.created


def test_rootfs_without_sh_gets_no_cmd_and_gzip_is_kept(store: ImageStore, tmp_path: Path) -> None:
    layer = tar_bytes([d("etc"), f("etc/hostname", b"x\n")])
    (tmp_path / "rootfs.tar.gz").write_bytes(gz(layer))
    [image] = store.import_archive(tmp_path / "rootfs.tar.gz", "nosh:1")
    assert image.config.cmd == ()
    assert image.layers == (sha(layer),)
    layers = manifest_of(store, image.digest)["layers"]
    assert isinstance(layers, list)
    assert layers[0]["mediaType"] == MT_LAYER_GZIP
    assert layers[0]["digest"] == sha(gz(layer))
    [unpacked] = store.layer_dirs(image, 0)
    assert (unpacked / "etc" / "hostname").read_bytes() == b"x\n"


def test_merged_usr_rootfs_counts_as_having_sh(store: ImageStore, tmp_path: Path) -> None:
    layer = tar_bytes([sym("bin", "usr/bin"), d("usr"), d("usr/bin"), f("usr/bin/sh", b"", 0o755)])
    (tmp_path / "r.tar").write_bytes(layer)
    [image] = store.import_archive(tmp_path / "r.tar", "merged:1")
    assert image.config.cmd == ("sh",)


@pytest.mark.parametrize(
    "entries",
    [
        [f("../evil", b"x")],
        [f("/abs/evil", b"x")],
        [sym("link", "/"), f("link/etc/x", b"x")],
        [f("etc/passwd", b"x"), hard("pw", "/etc/passwd")],
        [hard("pw", "etc/shadow")],
        [hard("pw", "../outside")],
    ],
    ids=[
        "dotdot",
        "absolute",
        "symlink-parent",
        "hardlink-absolute",
        "hardlink-not-in-layer",
        "hardlink-dotdot",
    ],
)
def test_hostile_rootfs_is_refused_at_import(store: ImageStore, tmp_path: Path, entries: list[Entry]) -> None:
    (tmp_path / "evil.tar").write_bytes(tar_bytes(entries))
    with pytest.raises(UnsafeArchive):
        store.import_archive(tmp_path / "evil.tar", "evil:1")
    assert_nothing_stored(store)


# -- export -------------------------------------------------------------------------------------


def test_export_then_import_gives_the_same_image(store: ImageStore, tmp_path: Path) -> None:
    img = ArchiveImage(
        layers=[rootfs(), tar_bytes([f("top", b"top")])], gzip_layers=True, tags=["round:trip"]
    )
    [original] = store.import_archive(docker_save(tmp_path / "s.tar", [img]))
    out = tmp_path / "export.tar"
    store.export("round:trip", out)

    with tarfile.open(out) as tar:
        names = tar.getnames()
        index_file = tar.extractfile("index.json")
        assert index_file is not None
        index = json.load(index_file)
    assert {"oci-layout", "index.json"} <= set(names)
    assert sum(n.startswith("blobs/sha256/") and len(n) == 77 for n in names) == 4
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "round:trip"
    assert index["manifests"][0]["digest"] == original.digest

    other = ImageStore(EnginePaths(tmp_path / "other"))
    [again] = other.import_archive(out)
    assert (again.id, again.digest, again.repo_tags) == (original.id, original.digest, original.repo_tags)
    # and into the same store: still one image
    store.import_archive(out)
    assert [i.id for i in store.list()] == [original.id]
    assert len(blob_files(store)) == 4

    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed: the export itself was checked, the skopeo cross-check was not")
    result = subprocess.run(
        ["skopeo", "inspect", f"oci-archive:{out}"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["Digest"] == original.digest
    assert info["Layers"] == [sha(b) for b in img.layer_blobs()]


def test_export_refuses_a_corrupt_blob_and_writes_nothing(store: ImageStore, tmp_path: Path) -> None:
    img = ArchiveImage(layers=[rootfs()], tags=["c:1"])
    [image] = store.import_archive(docker_save(tmp_path / "s.tar", [img]))
    layer = store.blobs.path(image.layers[0])
    layer.write_bytes(layer.read_bytes()[:-10])
    with pytest.raises(CorruptBlob, match=image.layers[0]):
        store.export("c:1", tmp_path / "out.tar")
    assert not (tmp_path / "out.tar").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.tar")] == []


# -- sharing ------------------------------------------------------------------------------------


def test_shared_base_layer_is_stored_and_unpacked_once(store: ImageStore, tmp_path: Path) -> None:
    base = rootfs("base", extra=[f("big", b"B" * 50_000)])
    one = ArchiveImage(layers=[base, tar_bytes([f("one", b"1")])], tags=["one:1"])
    two = ArchiveImage(layers=[base, tar_bytes([f("two", b"2")])], tags=["two:1"])
    [a] = store.import_archive(docker_save(tmp_path / "one.tar", [one]))
    [b] = store.import_archive(docker_save(tmp_path / "two.tar", [two]))
    [a_again] = store.import_archive(docker_save(tmp_path / "one-again.tar", [one]))
    assert a_again.id == a.id
    # 3 distinct layers + 2 configs + 2 manifests
    assert len(blob_files(store)) == 7

    dirs_a = store.layer_dirs(a, 100000)
    dirs_b = store.layer_dirs(b, 100000)
    assert dirs_a[0] == dirs_b[0]
    assert dirs_a[0] == store.paths.layers / sha(base).split(":")[1] / "100000"
    assert len([p for p in store.paths.layers.iterdir() if p.is_dir()]) == 3
    unpacked = [p for p in store.paths.layers.glob("*/*") if p.is_dir()]
    assert len(unpacked) == 3
    assert (dirs_a[0] / "etc" / "base").read_text() == "base"
    assert (dirs_b[1] / "two").read_text() == "2"
    # a second uid range gets its own copies
    store.layer_dirs(a, 200000)
    assert len([p for p in store.paths.layers.glob("*/*") if p.is_dir()]) == 5
    assert list(store.paths.tmp.iterdir()) == []
