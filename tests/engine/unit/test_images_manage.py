"""Listing, resolving, tagging, removing and pruning images."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from engine.errors import Conflict, CorruptBlob, ImageNotFound, InvalidReference
from engine.images.model import Image
from engine.images.store import ImageStore
from engine.paths import EnginePaths
from tests.engine.images_fixtures import ArchiveImage, docker_save, f, rootfs, sha, tar_bytes


@pytest.fixture()
def store(tmp_path: Path) -> ImageStore:
    paths = EnginePaths(tmp_path / "root")
    paths.ensure()
    return ImageStore(paths)


def add(
    store: ImageStore,
    tmp_path: Path,
    name: str,
    *tags: str,
    created: str = "2024-01-02T03:04:05Z",
    base: bytes | None = None,
) -> Image:
    """Import a two-layer image (``base`` shared if given) with ``tags``."""
    layers = [base or rootfs(name), tar_bytes([f(f"only-{name}", name.encode())])]
    img = ArchiveImage(layers=layers, tags=list(tags), created=created, label=name)
    [image] = store.import_archive(docker_save(tmp_path / f"{name}.tar", [img]))
    return image


def blob_count(store: ImageStore) -> int:
    return len(list(store.paths.blobs.iterdir()))


def refs_in_index(store: ImageStore) -> list[str | None]:
    doc = json.loads(store.paths.images_index.read_text())
    return sorted(
        (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") or "" for m in doc["manifests"]
    )


def test_list_is_newest_first_and_includes_dangling(store: ImageStore, tmp_path: Path) -> None:
    old = add(store, tmp_path, "old", "old:1", created="2020-01-01T00:00:00Z")
    new = add(store, tmp_path, "new", "new:1", created="2024-06-01T00:00:00.123456789Z")
    dangling = add(store, tmp_path, "dang", created="2022-01-01T00:00:00Z")
    assert [i.id for i in store.list()] == [new.id, dangling.id, old.id]
    assert store.list()[1].repo_tags == ()


def test_resolve_forms(store: ImageStore, tmp_path: Path) -> None:
    image = add(store, tmp_path, "app", "app:latest", "registry.example/team/app:1.2")
    hexid = image.id.split(":")[1]
    for ref in (
        "app",
        "app:latest",
        "registry.example/team/app:1.2",
        image.id,
        image.digest,
        hexid[:4],
        hexid[:12],
        f"sha256:{hexid[:8]}",
        f"app@{image.digest}",
    ):
        assert store.resolve(ref).id == image.id, ref


def test_resolve_not_found_says_what_to_do(store: ImageStore) -> None:
    with pytest.raises(ImageNotFound) as exc:
        store.resolve("myapp:2")
    assert (
        str(exc.value) == "no image 'myapp:2' on this host; import it with: hpctl image import FILE myapp:2"
    )
    with pytest.raises(ImageNotFound, match=r"create it with: hpctl image bootstrap busybox$"):
        store.resolve("busybox")
    with pytest.raises(ImageNotFound, match=r"hpctl image bootstrap debian$"):
        store.resolve("debian:bookworm")
    with pytest.raises(ImageNotFound, match=r"hpctl image bootstrap busybox --tag busybox:1\.36"):
        store.resolve("busybox:1.36")
    with pytest.raises(ImageNotFound):
        store.resolve("sha256:" + "0" * 64)
    with pytest.raises(InvalidReference):
        store.resolve("Not A Reference!")


def test_ambiguous_short_id(store: ImageStore, tmp_path: Path) -> None:
    layer = rootfs()
    seen: dict[str, ArchiveImage] = {}
    pair: tuple[ArchiveImage, ArchiveImage] | None = None
    for n in range(100_000):
        img = ArchiveImage(layers=[layer], label=str(n))
        prefix = img.id[7:11]
        if prefix in seen:
            pair = (seen[prefix], img)
            break
        seen[prefix] = img
    assert pair is not None
    store.import_archive(docker_save(tmp_path / "pair.tar", list(pair)))
    with pytest.raises(InvalidReference, match="ambiguous"):
        store.resolve(pair[0].id[7:11])
    assert store.resolve(pair[0].id[7:30]).id == pair[0].id


def test_tag_adds_and_moves_names(store: ImageStore, tmp_path: Path) -> None:
    a = add(store, tmp_path, "a", "a:1")
    b = add(store, tmp_path, "b", "b:1")
    tagged = store.tag("a:1", "shared")
    assert tagged.repo_tags == ("a:1", "shared:latest")
    assert store.resolve("shared").id == a.id
    store.tag(b.id, "shared:latest")  # moves the tag
    assert store.resolve("shared").id == b.id
    assert store.resolve("a:1").repo_tags == ("a:1",)
    store.tag("a:1", "only")
    store.remove("a:1")
    store.tag("b:1", "only")  # a loses its last tag: dangling, still listed
    assert store.resolve(a.id).repo_tags == ()
    assert a.id in [i.id for i in store.list()]
    assert "" in refs_in_index(store)
    with pytest.raises(InvalidReference):
        store.tag("b:1", "Bad Name")
    with pytest.raises(ImageNotFound):
        store.tag("nope:1", "x")


def test_rmi_by_tag_untags_until_the_last_tag(store: ImageStore, tmp_path: Path) -> None:
    image = add(store, tmp_path, "app", "app:1", "app:2")
    blobs = blob_count(store)
    store.layer_dirs(image, 0)
    assert store.remove("app:1") == ["Untagged: app:1"]
    assert blob_count(store) == blobs
    assert store.remove("app:2") == ["Untagged: app:2", f"Deleted: {image.id}"]
    assert store.list() == []
    assert blob_count(store) == 0
    assert list(store.paths.layers.iterdir()) == []
    assert refs_in_index(store) == []
    with pytest.raises(ImageNotFound):
        store.remove("app:2")


def test_rmi_by_id_with_several_tags_needs_force(store: ImageStore, tmp_path: Path) -> None:
    image = add(store, tmp_path, "app", "app:1", "app:2")
    with pytest.raises(Conflict, match="app:1, app:2"):
        store.remove(image.id)
    assert store.remove(image.id[7:19], force=True) == [
        "Untagged: app:1",
        "Untagged: app:2",
        f"Deleted: {image.id}",
    ]
    assert store.list() == []


def test_shared_layers_survive_removing_one_image(store: ImageStore, tmp_path: Path) -> None:
    base = rootfs("base")
    a = add(store, tmp_path, "a", "a:1", base=base)
    b = add(store, tmp_path, "b", "b:1", base=base)
    store.layer_dirs(a, 0)
    store.layer_dirs(b, 0)
    store.remove("a:1")
    assert store.blobs.exists(sha(base))
    assert (store.paths.layers / sha(base).split(":")[1] / "0").is_dir()
    assert not (store.paths.layers / a.layers[1].split(":")[1]).exists()
    assert [p.name for p in store.paths.layers.iterdir()] and len(list(store.paths.layers.iterdir())) == 2
    assert store.layer_dirs(store.resolve("b:1"), 0)[0].is_dir()


def test_image_in_use_is_protected(store: ImageStore, tmp_path: Path) -> None:
    image = add(store, tmp_path, "app", "app:1")
    used = {image.id}
    with pytest.raises(Conflict) as exc:
        store.remove("app:1", in_use=used)
    assert "is used by a container; remove the container first or use -f" in str(exc.value)
    with pytest.raises(Conflict, match="used by a container"):
        store.remove(image.id, in_use={image.id.split(":")[1]})
    blobs = blob_count(store)
    # force: untagged, but kept (dangling) while in use
    assert store.remove("app:1", force=True, in_use=used) == ["Untagged: app:1"]
    assert [(i.id, i.repo_tags) for i in store.list()] == [(image.id, ())]
    assert blob_count(store) == blobs
    assert store.prune(in_use=used) == []
    assert store.prune(all=True, in_use=used) == []
    [pruned] = store.prune()
    assert pruned.id == image.id
    assert store.list() == []
    assert blob_count(store) == 0


def test_in_use_image_with_other_tags_can_lose_one(store: ImageStore, tmp_path: Path) -> None:
    image = add(store, tmp_path, "app", "app:1", "app:2")
    assert store.remove("app:1", in_use={image.id}) == ["Untagged: app:1"]


def test_prune_dangling_then_all(store: ImageStore, tmp_path: Path) -> None:
    tagged = add(store, tmp_path, "t", "t:1")
    dangling = add(store, tmp_path, "d")
    used = add(store, tmp_path, "u", "u:1")
    assert [i.id for i in store.prune()] == [dangling.id]
    assert {i.id for i in store.list()} == {tagged.id, used.id}
    assert [i.id for i in store.prune(all=True, in_use={used.id})] == [tagged.id]
    assert [i.id for i in store.list()] == [used.id]
    assert blob_count(store) == 4


def test_listing_survives_a_corrupt_config_but_resolve_reports_it(store: ImageStore, tmp_path: Path) -> None:
    image = add(store, tmp_path, "app", "app:1")
    store.blobs.path(image.id).write_bytes(b"{}")
    [listed] = store.list()
    assert listed.repo_tags == ("app:1",)
    with pytest.raises(CorruptBlob, match=image.id):
        store.resolve("app:1")
    assert store.remove("app:1")[-1] == f"Deleted: {image.id}"


def test_concurrent_imports_lose_no_index_update(store: ImageStore, tmp_path: Path) -> None:
    archives = []
    for n in range(6):
        img = ArchiveImage(layers=[rootfs(f"c{n}")], tags=[f"c{n}:1"])
        archives.append(docker_save(tmp_path / f"c{n}.tar", [img]))
    errors: list[BaseException] = []

    def run(path: Path) -> None:
        try:
            ImageStore(store.paths).import_archive(path)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(a,)) for a in archives]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(t for i in store.list() for t in i.repo_tags) == [f"c{n}:1" for n in range(6)]
    assert list(store.paths.tmp.iterdir()) == []


def test_concurrent_layer_dirs_unpack_once(store: ImageStore, tmp_path: Path) -> None:
    image = add(store, tmp_path, "app", "app:1")
    results: list[list[Path]] = []

    def run() -> None:
        results.append(ImageStore(store.paths).layer_dirs(image, 300000))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(r == results[0] for r in results)
    assert len(list(store.paths.layers.glob("*/*"))) == 2
    assert list(store.paths.tmp.iterdir()) == []
