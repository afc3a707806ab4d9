"""Image events from the one place each change happens in the store: import, tag, untag, delete."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from engine.build.model import BuildOptions
from engine.engine import Engine
from engine.events import EventFilter
from engine.images.store import ImageStore
from engine.paths import EnginePaths
from engine.registry import TransferReport
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


def test_pull_push_and_build_are_recorded_by_the_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The registry and the builder are stood in for: what is tested is the event each leaves."""
    import engine.build.builder as builder_module
    import engine.registry as registry_module

    eng = Engine(root=tmp_path / "root", instance="evt-unit")
    pulled = TransferReport(reference="registry.example/acme/app:1", image_id="sha256:" + "a" * 64)
    monkeypatch.setattr(registry_module, "pull", lambda *a, **k: pulled)  # Engine imports it when pulling
    monkeypatch.setattr(registry_module, "push", lambda *a, **k: pulled)
    built = SimpleNamespace(image=SimpleNamespace(id="sha256:" + "b" * 64))
    monkeypatch.setattr(builder_module.Builder, "__init__", lambda self, *a: None)
    monkeypatch.setattr(builder_module.Builder, "run", lambda self: built)
    monkeypatch.setattr(eng.images, "resolve", lambda *a, **k: None)
    eng.pull("registry.example/acme/app:1", tag_as="acme/app:1", tenant="acme")
    eng.push("acme/app:1", "registry.example/acme/app:1", tenant="acme")
    eng.build(BuildOptions(context=tmp_path, tag="acme/site:1", tenant="acme"))
    seen = [(e.action, e.id, e.attributes["name"], e.tenant) for e in eng.events()]
    assert seen == [
        ("pull", "sha256:" + "a" * 64, "acme/app:1", "acme"),
        ("push", "sha256:" + "a" * 64, "registry.example/acme/app:1", "acme"),
        ("build", "sha256:" + "b" * 64, "acme/site:1", "acme"),
    ]
    assert list(eng.events(tenant="globex")) == []
