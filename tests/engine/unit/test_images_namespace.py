"""Tenant-owned image names: a tenant reads its own images and the base set, and writes only its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.errors import Conflict, CorruptBlob, ImageNotFound, InvalidReference
from engine.images.model import Image
from engine.images.store import ImageStore
from engine.paths import EnginePaths
from tests.engine.images_fixtures import (
    ArchiveImage,
    docker_save,
    f,
    oci_files,
    rootfs,
    sha,
    tar_bytes,
    write_tar,
)


@pytest.fixture()
def store(tmp_path: Path) -> ImageStore:
    paths = EnginePaths(tmp_path / "root")
    paths.ensure()
    return ImageStore(paths)


def image(name: str, *tags: str) -> ArchiveImage:
    return ArchiveImage(layers=[rootfs(name), tar_bytes([f(f"only-{name}", name.encode())])], tags=list(tags))


def load(store: ImageStore, tmp_path: Path, img: ArchiveImage, ref: str, tenant: str | None) -> Image:
    [loaded] = store.import_archive(docker_save(tmp_path / f"{img.id[7:19]}.tar", [img]), ref, tenant=tenant)
    return loaded


@pytest.fixture()
def world(store: ImageStore, tmp_path: Path) -> dict[str, Image]:
    """A base image busybox:latest (operator), beta/app:v1 (tenant beta)."""
    return {
        "base": load(store, tmp_path, image("bb"), "busybox:latest", None),
        "beta": load(store, tmp_path, image("beta-secret"), "beta/app:v1", "beta"),
    }


def test_multi_image_archive_stores_only_the_asked_for_image_under_the_given_name(
    store: ImageStore, tmp_path: Path, world: dict[str, Image]
) -> None:
    """Tenant alpha's archive carries beta's tag and the base tag: neither moves, nothing else is stored."""
    hostile = [image("alpha-app", "alpha/app:v1"), image("evil1", "beta/app:v1"), image("evil2", "busybox")]
    before = {i.id for i in store.list()}
    [loaded] = store.import_archive(
        docker_save(tmp_path / "evil.tar", hostile), "alpha/app:v1", tenant="alpha"
    )
    assert loaded.repo_tags == ("alpha/app:v1",) and loaded.id == hostile[0].id
    assert store.resolve("beta/app:v1", tenant="beta").id == world["beta"].id
    assert store.resolve("busybox:latest").id == world["base"].id
    assert {i.id for i in store.list()} == before | {hostile[0].id}


def test_archive_tags_are_ignored_even_when_the_first_image_carries_them(
    store: ImageStore, tmp_path: Path, world: dict[str, Image]
) -> None:
    hostile = image("evil", "beta/app:v1", "busybox:latest")
    loaded = load(store, tmp_path, hostile, "alpha/x:1", "alpha")
    assert loaded.repo_tags == ("alpha/x:1",)
    assert store.resolve("beta/app:v1").id == world["beta"].id
    assert store.resolve("busybox").id == world["base"].id


def test_oci_layout_ref_names_are_ignored(store: ImageStore, tmp_path: Path, world: dict[str, Image]) -> None:
    a, b = image("oa", "beta/app:v1"), image("ob", "busybox:latest")
    files = oci_files([a, b])
    [loaded] = store.import_archive(write_tar(tmp_path / "oci.tar", files), "alpha/o:1", tenant="alpha")
    assert loaded.repo_tags == ("alpha/o:1",)
    assert store.resolve("beta/app:v1").id == world["beta"].id
    assert store.resolve("busybox").id == world["base"].id
    assert b.id not in {i.id for i in store.list()}


@pytest.mark.parametrize(
    "name", ["beta/app:v1", "busybox:latest", "alphabet/x:1", "registry.example/alpha/x:1"]
)
def test_a_tenant_cannot_write_outside_its_namespace(
    store: ImageStore, tmp_path: Path, world: dict[str, Image], name: str
) -> None:
    index = store.paths.images_index.read_bytes()
    with pytest.raises(InvalidReference, match=r"tenant 'alpha' cannot name an image .*alpha/<name>:<tag>"):
        load(store, tmp_path, image("evil"), name, "alpha")
    with pytest.raises(InvalidReference, match="alpha/<name>:<tag>"):
        store.tag("busybox", name, tenant="alpha")
    assert store.paths.images_index.read_bytes() == index
    assert store.resolve("beta/app:v1").id == world["beta"].id
    assert store.resolve("busybox").id == world["base"].id


def test_a_tenant_import_needs_a_name(store: ImageStore, tmp_path: Path) -> None:
    with pytest.raises(InvalidReference, match=r"needs the name .* alpha/<name>:<tag>"):
        store.import_archive(docker_save(tmp_path / "a.tar", [image("a", "alpha/a:1")]), tenant="alpha")
    assert store.list() == []


def test_a_tenant_reads_its_own_and_the_base_set_only(
    store: ImageStore, tmp_path: Path, world: dict[str, Image]
) -> None:
    assert store.resolve("busybox", tenant="alpha").id == world["base"].id
    for ref in ("beta/app:v1", world["beta"].id, world["beta"].id[7:19], f"beta/app@{world['beta'].digest}"):
        with pytest.raises(ImageNotFound, match=r"for tenant 'alpha': use a base image .*alpha/<name>:<tag>"):
            store.resolve(ref, tenant="alpha")
        with pytest.raises(ImageNotFound):
            store.export(ref, tmp_path / "out.tar", tenant="alpha")
        with pytest.raises(ImageNotFound):
            store.tag(ref, "alpha/stolen:1", tenant="alpha")
    assert not (tmp_path / "out.tar").exists()
    assert [i.repo_tags for i in store.list(tenant="alpha")] == [("busybox:latest",)]
    assert {t for i in store.list(tenant="beta") for t in i.repo_tags} == {"busybox:latest", "beta/app:v1"}
    assert {t for i in store.list() for t in i.repo_tags} == {"busybox:latest", "beta/app:v1"}


def test_shared_content_shows_each_tenant_only_its_tags(
    store: ImageStore, tmp_path: Path, world: dict[str, Image]
) -> None:
    same = image("beta-secret")
    load(store, tmp_path, same, "alpha/copy:1", "alpha")
    assert store.resolve("alpha/copy:1", tenant="alpha").repo_tags == ("alpha/copy:1",)
    assert store.resolve(world["beta"].id, tenant="alpha").repo_tags == ("alpha/copy:1",)
    assert store.resolve("beta/app:v1", tenant="beta").repo_tags == ("beta/app:v1",)


def test_a_base_name_inside_a_tenant_namespace_is_the_operators(store: ImageStore, tmp_path: Path) -> None:
    load(store, tmp_path, image("op"), "alpha/tools:1", None)
    with pytest.raises(Conflict, match="'alpha/tools:1' is a base image and only the operator can change it"):
        load(store, tmp_path, image("evil"), "alpha/tools:1", "alpha")
    assert store.resolve("alpha/tools:1").id == image("op").id


def test_tenant_tags_and_moves_within_its_namespace(
    store: ImageStore, tmp_path: Path, world: dict[str, Image]
) -> None:
    mine = load(store, tmp_path, image("mine"), "alpha/app:1", "alpha")
    store.tag("busybox", "alpha/app:2", tenant="alpha")
    store.tag("alpha/app:1", "alpha/app:2", tenant="alpha")
    assert store.resolve("alpha/app:2", tenant="alpha").id == mine.id
    assert store.resolve("busybox").repo_tags == ("busybox:latest",)
    doc = json.loads(store.paths.images_index.read_text())
    owners = {
        m["annotations"].get("org.opencontainers.image.ref.name"): m["annotations"].get(
            "io.hostpanel.image.tenant"
        )
        for m in doc["manifests"]
    }
    assert owners == {
        "busybox:latest": None,
        "beta/app:v1": "beta",
        "alpha/app:1": "alpha",
        "alpha/app:2": "alpha",
    }


def test_operator_reads_everything_and_keeps_docker_load(store: ImageStore, tmp_path: Path) -> None:
    two = [image("x", "x:1"), image("y", "y:1")]
    loaded = store.import_archive(docker_save(tmp_path / "two.tar", two))
    assert [i.repo_tags for i in loaded] == [("x:1",), ("y:1",)]
    load(store, tmp_path, image("t"), "gamma/t:1", "gamma")
    assert store.resolve("gamma/t:1").id == image("t").id
    assert store.list(tenant="delta") != [] and "gamma/t:1" not in {
        t for i in store.list(tenant="delta") for t in i.repo_tags
    }


def test_an_untagged_image_a_tenant_stored_is_readable_by_id_only_by_it(
    store: ImageStore, tmp_path: Path
) -> None:
    stored = load(store, tmp_path, image("dangling"), "alpha/tmp:1", "alpha")
    store.remove("alpha/tmp:1", force=True, in_use={stored.id})
    assert store.resolve(stored.id, tenant="alpha").repo_tags == ()
    with pytest.raises(ImageNotFound):
        store.resolve(stored.id, tenant="beta")


def test_forget_tenant_drops_only_its_names_and_images(
    store: ImageStore, tmp_path: Path, world: dict[str, Image]
) -> None:
    shared = load(store, tmp_path, image("beta-secret"), "alpha/copy:1", "alpha")
    own = load(store, tmp_path, image("alpha-only"), "alpha/own:1", "alpha")
    running = load(store, tmp_path, image("alpha-running"), "alpha/run:1", "alpha")
    assert sorted(store.forget_tenant("alpha", in_use={running.id})) == [
        "alpha/copy:1",
        "alpha/own:1",
        "alpha/run:1",
    ]
    ids = {i.id for i in store.list()}
    assert shared.id in ids and running.id in ids and own.id not in ids  # beta's tag keeps the shared one
    assert store.resolve("beta/app:v1", tenant="beta").repo_tags == ("beta/app:v1",)
    assert store.resolve("busybox").id == world["base"].id
    assert store.list(tenant="alpha") == [store.resolve("busybox")]
    assert sha(image("alpha-only").layers[1]) not in store.blobs.digests()  # its own layer is deleted


def test_forget_tenant_also_drops_operator_names_in_its_namespace(store: ImageStore, tmp_path: Path) -> None:
    """A slug reused after a purge must not inherit ``alpha/...`` names an operator call wrote."""
    load(store, tmp_path, image("op"), "alpha/tools:1", None)
    load(store, tmp_path, image("team"), "team/tool:1", None)
    assert store.forget_tenant("alpha") == ["alpha/tools:1"]
    with pytest.raises(ImageNotFound):
        store.resolve("alpha/tools:1")
    assert store.resolve("team/tool:1").id == image("team").id


def test_legacy_names_are_claimed_by_their_tenant_and_the_rest_stay_base(
    store: ImageStore, tmp_path: Path
) -> None:
    """An index written before names had owners: the agent hands each tenant its namespace."""
    load(store, tmp_path, image("old-acme"), "acme/app:1", None)
    load(store, tmp_path, image("team"), "team/tool:1", None)
    assert sorted(store.base_tags()) == ["acme/app:1", "team/tool:1"]
    assert store.claim_tenant_names(["acme", "other"]) == ["acme/app:1"]
    assert store.claim_tenant_names(["acme"]) == []
    assert store.base_tags() == ["team/tool:1"]
    store.tag("acme/app:1", "acme/app:2", tenant="acme")  # acme may move its own names again
    with pytest.raises(ImageNotFound):
        store.resolve("acme/app:1", tenant="other")


def test_a_named_import_never_reads_the_archives_other_images(store: ImageStore, tmp_path: Path) -> None:
    """The images after the first are not even staged: a broken second image does not matter."""
    broken = image("broken", "beta/app:v1")
    broken.config_override = image("other").config  # its layers do not match its config
    first = image("first", "alpha/x:1")
    for archive in (
        docker_save(tmp_path / "two.tar", [first, broken]),
        write_tar(tmp_path / "two-oci.tar", oci_files([first, broken])),
    ):
        [loaded] = store.import_archive(archive, "alpha/x:1", tenant="alpha")
        assert loaded.id == first.id
        assert [i.repo_tags for i in store.list()] == [("alpha/x:1",)]
        with pytest.raises(CorruptBlob):
            store.import_archive(archive)  # the operator's `docker load` reads them all
