"""The image store of one engine: import, export, tag, remove, prune, and unpack layers.

On disk (see DESIGN.md, "The engine on disk")::

    <root>/blobs/sha256/<hex>            content-addressed blobs (manifests, configs, layers)
    <root>/images/index.json             OCI index: tags -> manifests (+ .lock)
    <root>/images/locks/                 one lock file per unpacked layer
    <root>/layers/<diff_id hex>/<uid_base>/   a layer unpacked for containers of that uid range
    <root>/tmp/                          staging; everything appears elsewhere by rename

Image ids are config digests; ``Image.digest`` is the manifest digest. At most
one manifest is kept per image id: importing the same image again (from any
format) replaces the manifest and keeps the tags.

Names are owned (:mod:`engine.images.namespace`): every method that reads or
writes names takes ``tenant``. A tenant call sees and writes only its own
``<tenant>/...`` tags and reads the operator's base set; an operator call
(``tenant=None``, the default, as `hpctl` without ``--tenant``) sees
everything and writes base tags.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import Conflict, CorruptBlob, ImageNotFound, InvalidArchive, InvalidReference
from engine.events import EventJournal
from engine.fsutil import file_lock
from engine.images.blobs import TMP_PREFIX, BlobStore
from engine.images.digest import digest_hex
from engine.images.extract import TAR_ERRORS, check_uid_base, extract_layer, remove_tree
from engine.images.layout import ImageIndex, ImageRecord, fold, unfold
from engine.images.model import Image, ImageConfig
from engine.images.namespace import (
    check_writable,
    namespace_of,
    tags_of_deleted_tenant,
    visible,
    with_tags_written,
)
from engine.images.oci import (
    DEFAULT_PATH,
    LayerRef,
    build_config,
    parse_config,
    parse_created,
    parse_manifest,
    utc_now_iso,
)
from engine.images.reference import DIGEST_RE, normalize_tag, parse_reference
from engine.paths import EnginePaths

# Reading and writing archives, bootstrapping and unpacking layers import their modules where
# they happen (tarfile, compressors, debootstrap): listing and resolving images stay lean.
if TYPE_CHECKING:
    from engine.images.staging import StagedImage, Staging

_EPOCH = datetime.fromtimestamp(0, UTC)
_SHORT_ID_RE = re.compile(r"^(?:sha256:)?([0-9a-f]{4,64})$")
_STALE_TMP_SECONDS = 24 * 3600
_BOOTSTRAPPABLE = {"busybox": "busybox:latest", "debian": "debian:bookworm"}


class ImageStore:
    """Images of one engine root (see the module docstring for the layout)."""

    def __init__(self, paths: EnginePaths) -> None:
        self.paths = paths
        self.blobs = BlobStore(paths.blobs, paths.tmp)
        self.index = ImageIndex(paths.images_index)
        # GC hooks (the build cache): given the ids of the images that remain, each drops what it
        # no longer needs and returns the (uncompressed layer) blob digests the store must keep.
        self.gc_hooks: builtins.list[Callable[[set[str]], set[str]]] = []
        self.events = EventJournal(paths.events)

    def event(self, action: str, image_id: str, name: str, tenant: str | None) -> None:
        """Record an image event (pull, push, tag, untag, delete, import, build) for ``tenant``."""
        self.events.record("image", action, image_id, {"name": name}, tenant=tenant or "")

    # -- reading ------------------------------------------------------------------------------

    def list(self, *, tenant: str | None = None) -> builtins.list[Image]:
        """Every image ``tenant`` can use (all, tagged or dangling, for the operator), newest first.

        A tenant sees its own images and the base set, each with only the tags it can see.

        Listing does not fail on a damaged image: one whose config blob is
        corrupt is listed with an empty config and no layers (`resolve` and
        `layer_dirs` raise CorruptBlob for it).
        """
        images = [self._image(r, tolerant=True) for r in visible(fold(self.index.load()), tenant)]
        return sorted(images, key=lambda i: (parse_created(i.created) or _EPOCH, i.id), reverse=True)

    def resolve(self, reference: str, *, tenant: str | None = None) -> Image:
        """The image for ``name[:tag]``, ``name@sha256:..``, an id or manifest digest, or an id prefix.

        ``tenant`` finds only its own images and the base set (anything else
        does not exist for it). Raises ImageNotFound (saying how to get the image),
        InvalidReference for an ambiguous short id or a malformed reference,
        CorruptBlob if the image's config blob is damaged.
        """
        record, _tag = self._find(fold(self.index.load()), reference, tenant)
        return self._image(record)

    def inspect(self, reference: str, *, tenant: str | None = None) -> dict[str, Any]:
        """Everything about an image as JSON-ready data (the Image fields plus the raw OCI config).

        Raises like :meth:`resolve`.
        """
        record, _tag = self._find(fold(self.index.load()), reference, tenant)
        image = self._image(record)
        raw = parse_config(self.blobs.read_bytes(image.id)).raw
        return {
            "id": image.id,
            "digest": image.digest,
            "repo_tags": list(image.repo_tags),
            "created": image.created,
            "size": image.size,
            "layers": list(image.layers),
            "architecture": raw.get("architecture", ""),
            "os": raw.get("os", ""),
            "config": {
                "env": list(image.config.env),
                "cmd": list(image.config.cmd),
                "entrypoint": list(image.config.entrypoint),
                "working_dir": image.config.working_dir,
                "user": image.config.user,
                "stop_signal": image.config.stop_signal,
                "exposed_ports": list(image.config.exposed_ports),
                "labels": dict(image.config.labels),
                "volumes": list(image.config.volumes),
            },
            "oci_config": raw,
        }

    # -- import / export ----------------------------------------------------------------------

    def import_archive(
        self, path: Path, reference: str | None = None, *, tenant: str | None = None
    ) -> builtins.list[Image]:
        """Import a docker-save archive, an OCI image layout (directory or tar) or a plain rootfs tar.

        With ``reference``, exactly one image is stored: the archive's first,
        tagged ``reference`` and nothing else; every tag written inside the
        archive is ignored and its other images are not stored. Without it
        (operator only, like `docker load`) every image is stored under the
        archive's own tags. A tenant import needs a ``reference`` in the
        tenant's namespace. Every blob is verified before anything is
        stored; a failed import leaves no blob and no index entry behind.
        Raises InvalidArchive (unreadable, truncated, zstd), CorruptBlob
        (content does not match a digest), UnsafeArchive (a layer member that
        could escape), InvalidReference (bad or missing name, or one outside
        the tenant's namespace), Conflict (the name is a base image).
        """
        if tenant is not None and reference is None:
            raise InvalidReference(
                "a tenant's import needs the name to store the image under: "
                f"{namespace_of(tenant)}<name>:<tag>"
            )
        from engine.images.archive import read_archive
        from engine.images.staging import Staging

        with Staging(self.blobs) as staging:
            staged = read_archive(Path(path), staging, reference)
            if not staged:
                raise InvalidArchive(f"{path} contains no image")
            images = self.commit_staged(staged, staging, tenant=tenant)
        for image in images:
            self.event("import", image.id, image.repo_tags[0] if image.repo_tags else image.id, tenant)
        return images

    def export(self, reference: str, dest: Path, *, tenant: str | None = None) -> None:
        """Write the image as an OCI image layout tar at ``dest`` (atomically).

        The index carries the tag used as ``reference`` (or the image's first
        tag) as ``org.opencontainers.image.ref.name``. Raises ImageNotFound,
        CorruptBlob if a blob is damaged (``dest`` is then not created).
        """
        record, tag = self._find(fold(self.index.load()), reference, tenant)
        manifest = parse_manifest(self.blobs.read_bytes(record.manifest_digest))
        from engine.images.export import write_oci_archive

        write_oci_archive(
            self.blobs,
            Path(dest),
            manifest_digest=record.manifest_digest,
            manifest_media_type=record.media_type,
            manifest_size=record.manifest_size,
            blob_digests=[
                record.manifest_digest,
                manifest.config_digest,
                *(la.digest for la in manifest.layers),
            ],
            ref_name=tag or (record.tags[0] if record.tags else None),
        )

    # -- tags and removal ---------------------------------------------------------------------

    def tag(self, source: str, target: str, *, tenant: str | None = None) -> Image:
        """Add the tag ``target`` to the image ``source`` (moving it off any other image).

        A tenant tags only images it can read, and only with names in its
        namespace. Raises ImageNotFound, InvalidReference for a bad target or
        one outside the tenant's namespace, Conflict for a base image's name.
        """
        new_tag = normalize_tag(target)
        with self.index.locked():
            records = fold(self.index.load())
            record, _ = self._find(records, source, tenant)
            check_writable(records, [new_tag], tenant)
            records = _without_tags(records, {new_tag})
            records = [
                with_tags_written(r, [new_tag], tenant) if r.manifest_digest == record.manifest_digest else r
                for r in records
            ]
            self.index.save(unfold(records))
            record = next(r for r in records if r.manifest_digest == record.manifest_digest)
        self.event("tag", record.image_id, new_tag, tenant)
        return self._image(record, tolerant=True)

    def remove(
        self, reference: str, *, force: bool = False, in_use: Iterable[str] = frozenset()
    ) -> builtins.list[str]:
        """Remove a tag or an image, like `docker rmi`; returns "Untagged: x" / "Deleted: sha256:.." lines.

        A tag reference removes that tag; the image goes when its last tag
        goes. An id (or digest, or prefix) removes the image with all its tags
        (Conflict if it has several, unless ``force``). An image whose id is in
        ``in_use`` raises Conflict unless ``force``; with ``force`` it is only
        untagged and kept (dangling) until no container uses it. Unused blobs
        and unpacked layers are then deleted. Raises ImageNotFound.
        """
        used = _ids(in_use)
        lines: list[str] = []
        with self.index.locked():
            records = fold(self.index.load())
            record, tag = self._find(records, reference, None)
            label = f"{reference} ({record.image_id[7:19]})"
            in_use_msg = f"image {label} is used by a container; remove the container first or use -f"
            if tag is not None and len(record.tags) > 1:
                remaining: tuple[str, ...] = tuple(t for t in record.tags if t != tag)
                lines.append(f"Untagged: {tag}")
            else:
                if tag is None and len(record.tags) > 1 and not force:
                    raise Conflict(
                        f"image {label} is tagged {', '.join(record.tags)}; remove the tags one by one "
                        f"(hpctl rmi NAME:TAG) or use -f"
                    )
                if record.image_id in used and not force:
                    raise Conflict(in_use_msg)
                remaining = ()
                lines.extend(f"Untagged: {t}" for t in record.tags)
            if remaining or record.image_id in used:
                records = [r.with_tags(remaining, r.owners) if r is record else r for r in records]
            else:
                records = [r for r in records if r is not record]
                lines.append(f"Deleted: {record.image_id}")
            self.index.save(unfold(records))
            self._gc(records)
        owner = next(iter(record.owners.values()), record.holders[0] if record.holders else "")
        for line in lines:
            word, _, name = line.partition(": ")
            action = {"Untagged": "untag", "Deleted": "delete"}[word]
            self.event(action, record.image_id, name, record.owners.get(name, owner))
        return lines

    def prune(self, *, all: bool = False, in_use: Iterable[str] = frozenset()) -> builtins.list[Image]:
        """Delete dangling images (every image with ``all``) that no container uses; returns them.

        Unused blobs and unpacked layers are deleted too.
        """
        used = _ids(in_use)
        with self.index.locked():
            records = fold(self.index.load())
            victims = [r for r in records if r.image_id not in used and (all or not r.tags)]
            removed = [self._image(r, tolerant=True) for r in victims]
            keep = [r for r in records if r not in victims]
            if victims:
                self.index.save(unfold(keep))
            self._gc(keep)
        return removed

    def forget_tenant(self, tenant: str, *, in_use: Iterable[str] = frozenset()) -> builtins.list[str]:
        """Drop every name ``tenant`` owns and its hold on images (a deleted tenant); returns the tags.

        Images left with no tag and no holder are deleted with their blobs and
        unpacked layers, unless a container uses them (``in_use``: they stay
        dangling until then). Base images and other tenants' names stay as they are.
        """
        namespace_of(tenant)  # refuses a bad tenant name
        used = _ids(in_use)
        dropped: builtins.list[str] = []
        with self.index.locked():
            records = fold(self.index.load())
            kept = []
            for r in records:
                gone = list(tags_of_deleted_tenant(r, tenant))
                dropped.extend(gone)
                holders = tuple(h for h in r.holders if h != tenant)
                if not gone and holders == r.holders:
                    kept.append(r)
                    continue
                tags = tuple(t for t in r.tags if t not in gone)
                if tags or holders or r.image_id in used:
                    kept.append(replace(r.with_tags(tags, r.owners), holders=holders))
            self.index.save(unfold(kept))
            self._gc(kept)
        return dropped

    def base_tags(self) -> builtins.list[str]:
        """The tags of the operator's base set (every tag no tenant owns)."""
        return [t for r in fold(self.index.load()) for t in r.tags if t not in r.owners]

    def claim_tenant_names(self, tenants: Iterable[str]) -> builtins.list[str]:
        """Give each tenant the base tags in its namespace (``<tenant>/...``); returns them.

        Tags stored before names had owners are all in the base set; the host
        agent calls this with the panel's tenants so their images become theirs
        again. Raises InvalidSpec for a bad tenant name.
        """
        prefixes = {namespace_of(t): t for t in tenants}
        claimed: builtins.list[str] = []
        with self.index.locked():
            records = fold(self.index.load())
            updated = []
            for r in records:
                mine = {
                    t: prefixes[t.split("/", 1)[0] + "/"]
                    for t in r.tags
                    if t not in r.owners and "/" in t and t.split("/", 1)[0] + "/" in prefixes
                }
                claimed.extend(mine)
                updated.append(r.with_tags(r.tags, {**r.owners, **mine}) if mine else r)
            if claimed:
                self.index.save(unfold(updated))
        return claimed

    def gc(self) -> None:
        """Delete blobs, unpacked layers and layer locks that no image refers to, and stale tmp files."""
        with self.index.locked():
            self._gc(fold(self.index.load()))

    # -- layers for containers ----------------------------------------------------------------

    def layer_dirs(self, image: Image, uid_base: int) -> builtins.list[Path]:
        """The unpacked layer directories of ``image`` for the uid range at ``uid_base``, bottom to top.

        Each layer is unpacked once per (diff_id, uid_base) into
        ``layers/<diff_id hex>/<uid_base>`` with owners shifted by ``uid_base``,
        on first use, under a file lock, into tmp and then renamed (never half
        there). The blob digest and the diff_id are verified while reading.
        Raises CorruptBlob, UnsafeArchive, InvalidArchive, InvalidSpec (bad uid_base).
        """
        check_uid_base(uid_base)
        manifest = parse_manifest(self.blobs.read_bytes(image.digest))
        if len(manifest.layers) != len(image.layers):
            raise CorruptBlob(f"manifest {image.digest} does not match image {image.id}; re-import the image")
        return [
            self.unpacked_layer(layer, diff_id, uid_base)
            for layer, diff_id in zip(manifest.layers, image.layers, strict=True)
        ]

    # -- bootstrap ----------------------------------------------------------------------------

    def bootstrap_busybox(self, reference: str = "busybox:latest", *, busybox: Path | None = None) -> Image:
        """Create a busybox image from the host's static busybox (Debian busybox-static).

        One layer: /bin/busybox, a symlink per applet, /etc/passwd and group
        (root, nobody), /tmp (1777), /root, /home, /var ... The tar is
        deterministic, so bootstrapping twice gives the same image id.
        Config: Cmd ["sh"] and the default PATH. Raises HostNotReady without busybox.
        """
        from engine.images.archive import make_staged_image
        from engine.images.bootstrap import BUSYBOX, busybox_created, write_busybox_rootfs
        from engine.images.staging import Staging

        tag = normalize_tag(reference)
        with Staging(self.blobs) as staging:
            with self.blobs.writer() as w:
                mtime = write_busybox_rootfs(w, busybox or BUSYBOX)
                blob = staging.adopt(w.finish())
            layer = staging.scan_staged(blob, "busybox rootfs")
            created = busybox_created(mtime)
            config = build_config(
                [layer.diff_id],
                created=created,
                created_by="hpctl image bootstrap busybox",
                env=[f"PATH={DEFAULT_PATH}"],
                cmd=["sh"],
            )
            staged = make_staged_image(staging, config, parse_config(config), [layer], [tag])
            return self.commit_staged([staged], staging)[0]

    def bootstrap_debian(
        self,
        reference: str = "debian:bookworm",
        *,
        include: Sequence[str] = (),
        suite: str = "bookworm",
        mirror: str | None = None,
    ) -> Image:
        """Create a Debian image with ``debootstrap --variant=minbase`` (one layer, apt caches dropped).

        The mirror is the host's apt mirror for ``suite`` (falling back to
        deb.debian.org); ``include`` adds packages (``--include``). Config:
        Cmd ["bash"] and the default PATH. Needs root and network. Raises
        HostNotReady (no debootstrap, not root), EngineError if debootstrap fails.
        """
        from engine.images.archive import make_staged_image
        from engine.images.bootstrap import (
            check_packages,
            host_debian_mirror,
            run_debootstrap,
            unmount_below,
            write_tree_tar,
        )
        from engine.images.staging import Staging

        tag = normalize_tag(reference)
        packages = check_packages(include)
        mirror = mirror or host_debian_mirror(suite)
        self.paths.tmp.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=self.paths.tmp, prefix=TMP_PREFIX + "debootstrap-"))
        target = scratch / "rootfs"
        try:
            run_debootstrap(target, suite=suite, mirror=mirror, include=packages)
            with Staging(self.blobs) as staging:
                with self.blobs.writer() as w:
                    write_tree_tar(target, w)
                    blob = staging.adopt(w.finish())
                layer = staging.scan_staged(blob, "debian rootfs")
                created = utc_now_iso()
                with_pkgs = f" --include={','.join(packages)}" if packages else ""
                config = build_config(
                    [layer.diff_id],
                    created=created,
                    created_by=f"debootstrap --variant=minbase{with_pkgs} {suite} {mirror}",
                    env=[f"PATH={DEFAULT_PATH}"],
                    cmd=["bash"],
                )
                staged = make_staged_image(staging, config, parse_config(config), [layer], [tag])
                return self.commit_staged([staged], staging)[0]
        finally:
            unmount_below(target)
            remove_tree(scratch)

    # -- internals ----------------------------------------------------------------------------

    def _image(self, record: ImageRecord, *, tolerant: bool = False) -> Image:
        try:
            config = parse_config(self.blobs.read_bytes(record.image_id), f"config {record.image_id}")
        except InvalidArchive:
            if not tolerant:
                raise
            return Image(
                id=record.image_id,
                digest=record.manifest_digest,
                repo_tags=record.tags,
                created=record.created,
                size=record.size,
                layers=(),
                config=ImageConfig(),
            )
        return Image(
            id=record.image_id,
            digest=record.manifest_digest,
            repo_tags=record.tags,
            created=config.created or record.created,
            size=record.size,
            layers=config.diff_ids,
            config=config.config,
        )

    def _find(
        self, records: Sequence[ImageRecord], reference: str, tenant: str | None
    ) -> tuple[ImageRecord, str | None]:
        """The record for ``reference`` among those ``tenant`` can use (showing the tags it can
        see; for the operator, the stored record), and the tag it named (None for ids and digests)."""
        return self._find_visible(visible(records, tenant), reference, reference.strip(), tenant)

    def _find_visible(
        self, records: Sequence[ImageRecord], reference: str, text: str, tenant: str | None
    ) -> tuple[ImageRecord, str | None]:
        if DIGEST_RE.match(text):
            for r in records:
                if text in (r.image_id, r.manifest_digest):
                    return r, None
            raise self._not_found(reference, tenant)
        parse_error: InvalidReference | None = None
        try:
            ref = parse_reference(text)
        except InvalidReference as exc:
            parse_error, ref = exc, None
        if ref is not None:
            if ref.digest is not None:
                for r in records:
                    if r.manifest_digest == ref.digest:
                        return r, None
            else:
                for r in records:
                    if ref.tagged in r.tags:
                        return r, ref.tagged
        short = _SHORT_ID_RE.match(text)
        if short:
            hits = [r for r in records if digest_hex(r.image_id).startswith(short.group(1))]
            if len(hits) == 1:
                return hits[0], None
            if len(hits) > 1:
                raise InvalidReference(
                    f"short id {reference!r} is ambiguous: it matches {len(hits)} images; give more digits"
                )
        if parse_error is not None and not short:
            raise parse_error
        raise self._not_found(reference, tenant)

    @staticmethod
    def _not_found(reference: str, tenant: str | None) -> ImageNotFound:
        if tenant is not None:
            return ImageNotFound(
                f"no image {reference!r} for tenant {tenant!r}: use a base image or one of the tenant's "
                f"own images ({namespace_of(tenant)}<name>:<tag>); upload or build it under that name first"
            )
        try:
            ref = parse_reference(reference)
        except InvalidReference:
            ref = None
        if ref is not None and ref.digest is None and ref.name in _BOOTSTRAPPABLE:
            cmd = f"hpctl image bootstrap {ref.name}"
            if ref.tagged != _BOOTSTRAPPABLE[ref.name]:
                cmd += f" --tag {ref.tagged}"
            return ImageNotFound(f"no image {reference!r} on this host; create it with: {cmd}")
        return ImageNotFound(
            f"no image {reference!r} on this host; import it with: hpctl image import FILE {reference}"
        )

    def commit_staged(
        self, staged: Sequence[StagedImage], staging: Staging, *, tenant: str | None = None
    ) -> builtins.list[Image]:
        """Move staged blobs into the store and add the images to the index; returns the images.

        The one commit path of every importer (archives, bootstrap, build, pull): under
        the index lock, an image already stored under the same id or manifest keeps its
        tags, the new tags move off any other image, and unreferenced blobs are
        collected. The new tags belong to ``tenant`` (base tags for the operator), which
        may write only its own namespace, and ``tenant`` may read the images by id.
        Raises CorruptBlob if a staged blob no longer matches its digest,
        InvalidReference / Conflict for a tag the tenant may not write (nothing stored).
        """
        with self.index.locked():
            records = fold(self.index.load())
            check_writable(records, [t for img in staged for t in img.tags], tenant)
            committed: builtins.list[str] = []
            for img in staged:
                for layer in img.layers:
                    staging.commit(layer.blob)
                staging.commit(img.config)
                staging.commit(img.manifest)
                same = [
                    r
                    for r in records
                    if r.image_id == img.image_id or r.manifest_digest == img.manifest.digest
                ]
                kept_tags = tuple(dict.fromkeys(t for r in same for t in r.tags if t not in img.tags))
                owners = {t: o for r in same for t, o in r.owners.items()}
                holders = tuple(dict.fromkeys(h for r in same for h in r.holders))
                records = _without_tags([r for r in records if r not in same], set(img.tags))
                record = ImageRecord(
                    image_id=img.image_id,
                    manifest_digest=img.manifest.digest,
                    manifest_size=img.manifest.size,
                    media_type=img.manifest_media_type,
                    created=img.created,
                    size=img.size,
                    tags=kept_tags,
                    owners=owners,
                    holders=holders,
                )
                records.insert(0, with_tags_written(record, img.tags, tenant, holder=True))
                committed.append(img.image_id)
            self.index.save(unfold(records))
            self._gc(records)
        by_id = {r.image_id: r for r in records}
        return [self._image(by_id[i], tolerant=True) for i in committed]

    def _gc(self, records: Sequence[ImageRecord]) -> None:
        """Delete what ``records`` do not reference (call with the index lock held)."""
        keep_blobs: set[str] = set()
        keep_layers: set[str] = set()
        for r in records:
            keep_blobs.update((r.manifest_digest, r.image_id))
            try:
                manifest = parse_manifest(self.blobs.read_bytes(r.manifest_digest))
            except InvalidArchive:
                continue
            keep_blobs.update(la.digest for la in manifest.layers)
            keep_layers.update(
                digest_hex(la.digest) for la in manifest.layers
            )  # uncompressed: digest == diff_id
            try:
                keep_layers.update(
                    digest_hex(d) for d in parse_config(self.blobs.read_bytes(r.image_id)).diff_ids
                )
            except (InvalidArchive, ValueError):
                continue
        for hook in self.gc_hooks:
            kept = hook({r.image_id for r in records})
            keep_blobs |= kept
            keep_layers.update(digest_hex(d) for d in kept)
        for digest in self.blobs.digests() - keep_blobs:
            self.blobs.delete(digest)
        if self.paths.layers.is_dir():
            for d in self.paths.layers.iterdir():
                if len(d.name) == 64 and d.name not in keep_layers:
                    remove_tree(d)
        locks = self.paths.images / "locks"
        if locks.is_dir():
            for f in locks.iterdir():
                m = re.match(r"^layer-([0-9a-f]{64})-\d+\.lock$", f.name)
                if m and m.group(1) not in keep_layers:
                    with contextlib.suppress(FileNotFoundError):
                        f.unlink()
        self._clean_tmp()

    def _clean_tmp(self) -> None:
        if not self.paths.tmp.is_dir():
            return
        cutoff = time.time() - _STALE_TMP_SECONDS
        for p in self.paths.tmp.iterdir():
            try:
                if p.name.startswith(TMP_PREFIX) and p.lstat().st_mtime < cutoff:
                    remove_tree(p)
            except OSError:
                continue

    def unpacked_layer(self, layer: LayerRef, diff_id: str, uid_base: int) -> Path:
        """The directory of ``layer`` unpacked for the uid range at ``uid_base`` (see :meth:`layer_dirs`).

        Unpacked on first use under a file lock, into tmp and then renamed. Raises
        CorruptBlob, UnsafeArchive, InvalidArchive.
        """
        hexid = digest_hex(diff_id)
        final = self.paths.layers / hexid / str(uid_base)
        if final.is_dir():
            return final
        with file_lock(self.paths.images / "locks" / f"layer-{hexid}-{uid_base}.lock"):
            if final.is_dir():
                return final
            self.paths.tmp.mkdir(parents=True, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(dir=self.paths.tmp, prefix=TMP_PREFIX + "layer-"))
            try:
                rootfs = scratch / "rootfs"
                rootfs.mkdir(mode=0o755)
                self._extract_blob(layer, diff_id, rootfs, uid_base)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(final.parent, 0o711)
                os.rename(rootfs, final)
            finally:
                remove_tree(scratch)
        return final

    def drop_unpacked(self, uid_base: int) -> int:
        """Delete the layers unpacked for the uid range at ``uid_base`` (a purged tenant's); returns how many.

        Call only when no container of that range exists.
        """
        check_uid_base(uid_base)
        dropped = 0
        if not self.paths.layers.is_dir():
            return 0
        for layer in self.paths.layers.iterdir():
            unpacked = layer / str(uid_base)
            if len(layer.name) != 64 or not unpacked.is_dir():
                continue
            with file_lock(self.paths.images / "locks" / f"layer-{layer.name}-{uid_base}.lock"):
                remove_tree(unpacked)
            (self.paths.images / "locks" / f"layer-{layer.name}-{uid_base}.lock").unlink(missing_ok=True)
            dropped += 1
        return dropped

    def _extract_blob(self, layer: LayerRef, diff_id: str, dest: Path, uid_base: int) -> None:
        from engine.images.compression import decompressed
        from engine.images.digest import HashingReader
        from engine.images.staging import layer_compression

        compression = layer_compression(layer.media_type)
        with self.blobs.open(layer.digest) as reader:
            try:
                uncompressed = HashingReader(decompressed(reader, compression))
                extract_layer(uncompressed, dest, uid_base=uid_base)
                uncompressed.drain()
                reader.finish()
            except CorruptBlob:
                raise
            except TAR_ERRORS as exc:
                reader.finish()
                raise InvalidArchive(f"layer {layer.digest} is not a valid tar archive ({exc})") from None
            except InvalidArchive:
                reader.finish()  # a damaged blob explains a broken tar better
                raise
        if uncompressed.digest != diff_id:
            raise CorruptBlob(
                f"layer {layer.digest} is corrupt: its uncompressed content hashes to {uncompressed.digest}, "
                f"not to its diff_id {diff_id}; re-import the image"
            )


def _without_tags(records: Sequence[ImageRecord], tags: set[str]) -> builtins.list[ImageRecord]:
    """``records`` with ``tags`` removed from every image (an image may become dangling)."""
    return [
        r.with_tags(tuple(t for t in r.tags if t not in tags), r.owners) if set(r.tags) & tags else r
        for r in records
    ]


def _ids(ids: Iterable[str]) -> set[str]:
    return {i if i.startswith("sha256:") else f"sha256:{i}" for i in ids}
