"""The build cache's bookkeeping without root: keys, lookups, pins and its GC hook."""

from __future__ import annotations

import os
from pathlib import Path

from engine.build.cache import BuildCache, LayerInfo, StageState, step_key
from engine.images.blobs import BlobStore


def _cache(tmp_path: Path) -> tuple[BuildCache, BlobStore]:
    blobs = BlobStore(tmp_path / "blobs", tmp_path / "tmp")
    return BuildCache(tmp_path / "build-cache", blobs), blobs


def _state(blobs: BlobStore, content: bytes) -> StageState:
    digest = blobs.put_bytes(content)
    return StageState([LayerInfo(digest, digest, "application/vnd.oci.image.layer.v1.tar", len(content))])


def test_keys_depend_on_tenant_parent_text_and_content() -> None:
    base = step_key("a", "p", "COPY x /x", "h1")
    assert len({base, step_key("b", "p", "COPY x /x", "h1"), step_key("a", "q", "COPY x /x", "h1")}) == 3
    assert base != step_key("a", "p", "COPY x /x", "h2") and base == step_key("a", "p", "COPY x /x", "h1")


def test_lookup_is_per_tenant_and_drops_entries_whose_layers_are_gone(tmp_path: Path) -> None:
    cache, blobs = _cache(tmp_path)
    state = _state(blobs, b"layer")
    cache.store("alpha", "k1", state)
    assert cache.lookup("alpha", "k1") == state
    assert cache.lookup("beta", "k1") is None  # another tenant cannot probe alpha's entries
    blobs.delete(state.layers[0].digest)
    assert cache.lookup("alpha", "k1") is None
    assert cache.entry_count("alpha") == 0


def test_gc_hook_keeps_what_images_and_running_builds_need(tmp_path: Path) -> None:
    cache, blobs = _cache(tmp_path)
    kept, dropped, pinned = _state(blobs, b"kept"), _state(blobs, b"dropped"), _state(blobs, b"pinned")
    cache.store("t", "k-kept", kept)
    cache.store("t", "k-dropped", dropped)
    cache.store("t", "k-pinned", pinned)
    cache.reference("t", "sha256:" + "a" * 64, ["k-kept"])
    cache.reference("t", "sha256:" + "b" * 64, ["k-dropped"])
    pin = cache.pin()
    pin.add(keys=["k-pinned"], digests=["sha256:" + "c" * 64])
    keep = cache.gc_keep({"sha256:" + "a" * 64})  # image b was removed
    assert keep == {kept.layers[0].digest, pinned.layers[0].digest, "sha256:" + "c" * 64}
    assert cache.lookup("t", "k-dropped") is None and cache.lookup("t", "k-kept") == kept
    assert not (tmp_path / "build-cache" / "t" / "refs" / ("b" * 64 + ".json")).exists()
    pin.release()
    assert cache.gc_keep(set()) == set()
    assert cache.entry_count("t") == 0


def test_a_pin_left_by_a_dead_build_is_removed(tmp_path: Path) -> None:
    cache, _blobs = _cache(tmp_path)
    pin = cache.pin()
    pin.add(keys=["k"])
    # A crashed build: its lock is no longer held but the files stay.
    os.close(pin._fd)
    pin._fd = -1
    assert cache.gc_keep(set()) == set()
    assert list((tmp_path / "build-cache" / "pins").iterdir()) == []


def test_forget_drops_one_tenants_cache_and_spares_the_pins(tmp_path: Path) -> None:
    cache, blobs = _cache(tmp_path)
    cache.store("acme", "k1", _state(blobs, b"a"))
    cache.store("other", "k1", _state(blobs, b"b"))
    cache.store("pins", "k1", _state(blobs, b"c"))  # a tenant named like the pins directory
    pin = cache.pin()
    assert cache.forget("acme") == 1 and cache.entry_count("acme") == 0
    assert not (cache.root / "acme").exists()
    assert cache.entry_count("other") == 1
    assert cache.forget("pins") == 1 and cache.pin_is_live(pin.id)
    pin.release()
