"""Image events from the one place each change happens in the store: import, tag, untag, delete."""

from __future__ import annotations

from pathlib import Path

from engine.events import EventFilter
from engine.images.store import ImageStore
from engine.paths import EnginePaths
from tests.engine.images_fixtures import ArchiveImage, docker_save, rootfs


def test_import_tag_untag_and_delete_are_recorded_for_their_tenant(tmp_path: Path) -> None:
    paths = EnginePaths(tmp_path / "root")
    paths.ensure()
    store = ImageStore(paths)
    archive = docker_save(tmp_path / "a.tar", [ArchiveImage(layers=[rootfs("a")], tags=["x:1"], label="a")])
    [image] = store.import_archive(archive, "acme/app:1", tenant="acme")
    store.tag("acme/app:1", "acme/app:2", tenant="acme")
    store.remove("acme/app:1")
    store.remove("acme/app:2")
    seen = [(e.action, e.id, e.attributes["name"], e.tenant) for e in store.events.read()]
    assert seen == [
        ("import", image.id, "acme/app:1", "acme"),
        ("tag", image.id, "acme/app:2", "acme"),
        ("untag", image.id, "acme/app:1", "acme"),
        ("untag", image.id, "acme/app:2", "acme"),
        ("delete", image.id, image.id, "acme"),
    ]
    assert list(store.events.read(EventFilter.parse(None, tenant="globex"))) == []
    assert [e.action for e in store.events.read(EventFilter.from_args(["image=acme/app:2"]))] == [
        "tag",
        "untag",
    ]
