"""Hostile-input-safe extraction of one image layer into a directory, for overlayfs.

Written over ``tarfile`` members (never ``extractall``) with directory file
descriptors: every path is walked one component at a time with
``O_NOFOLLOW | O_DIRECTORY`` from the destination's fd, so a symlink in the
archive (``link -> /etc``) is created as-is but never followed while writing
(``link/passwd`` is refused). Files are created with ``O_EXCL | O_NOFOLLOW``.

Policy, member by member:

- absolute paths and ``..`` components: refused (UnsafeArchive naming the member);
- symlinks: created with any target (they resolve inside the container);
- hard links: only to a file, symlink or FIFO extracted earlier from this layer;
- char and block devices: skipped (neutralised; the runtime provides /dev);
- FIFOs: created;
- setuid and setgid bits: stripped from every member;
- owners: uid/gid shifted by ``uid_base`` (the container's user namespace maps
  0 -> uid_base, 65536 ids); ids >= 65536 are clamped to nobody (65534);
- whiteouts: ``.wh.NAME`` becomes an overlayfs whiteout (a 0:0 char device
  ``NAME``); ``.wh..wh..opq`` marks its directory opaque with the xattr
  ``trusted.overlay.opaque=y`` (``user.overlay.opaque`` when not root, the
  names overlayfs reads with ``userxattr``); other ``.wh..wh.*`` are ignored;
- mode, owner and mtime are kept; other xattrs (file capabilities ...) are dropped.
"""

from __future__ import annotations

import errno
import gzip
import lzma
import os
import shutil
import stat
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, cast

from engine.errors import Conflict, InvalidArchive, InvalidSpec, UnsafeArchive
from engine.images.digest import CHUNK, Readable
from engine.images.tarpath import OPAQUE_MARKER, WHITEOUT_PREFIX, display, member_parts

ID_RANGE = 65536
NOBODY = 65534
MAX_ID = 2**32 - 1
_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_NEWFILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_PERM_MASK = 0o7777 & ~(stat.S_ISUID | stat.S_ISGID)
# Errors that mean "this archive cannot be laid out", as opposed to host trouble (ENOSPC, EIO ...).
_ARCHIVE_ERRNOS = {
    errno.ENAMETOOLONG,
    errno.EEXIST,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.ELOOP,
    errno.EINVAL,
    errno.ENOENT,
    errno.ENOTEMPTY,
    errno.EMLINK,
}
TAR_ERRORS: tuple[type[BaseException], ...] = (
    tarfile.TarError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    gzip.BadGzipFile,
)


def check_uid_base(uid_base: int) -> int:
    """Return ``uid_base`` if a 65536-id range starting there fits in 32 bits, else raise InvalidSpec."""
    if (
        isinstance(uid_base, bool)
        or not isinstance(uid_base, int)
        or not 0 <= uid_base <= MAX_ID - ID_RANGE + 1
    ):
        raise InvalidSpec(f"invalid uid_base {uid_base!r}: expected 0..{MAX_ID - ID_RANGE + 1}")
    return uid_base


def shift_id(value: int, uid_base: int) -> int:
    """Map a uid/gid from the layer into the host range starting at ``uid_base``.

    Ids outside the 65536-id container range are clamped to nobody (65534).
    """
    if not 0 <= value < ID_RANGE:
        value = NOBODY
    return uid_base + value


@dataclass(frozen=True)
class CopyTarget:
    """Extract into an existing directory (``docker cp`` into a container) instead of a new tree.

    ``dir_fd`` is the open target directory: it keeps its own owner and mode, and a member for
    the archive's root is ignored. Device nodes are refused (not skipped). ``owner`` (container
    uid, gid) replaces every member's owner when set; ``no_overwrite_dir_non_dir`` refuses a
    member that would replace a directory with a non-directory or the reverse (Conflict).
    """

    dir_fd: int
    owner: tuple[int, int] | None = None
    no_overwrite_dir_non_dir: bool = False


@dataclass
class ExtractStats:
    """What an extraction did, for logs and tests."""

    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    fifos: int = 0
    whiteouts: int = 0
    opaque_dirs: int = 0
    stripped_setid: int = 0
    clamped_ids: int = 0
    skipped_devices: list[str] = field(default_factory=list)


class LayerExtractor:
    """Extract one layer tar stream into an existing empty directory ``dest``.

    ``chown`` defaults to "running as root" (a non-root process cannot give
    files away); ``xattr_prefix`` defaults to ``trusted.overlay.`` as root and
    ``user.overlay.`` otherwise.
    """

    def __init__(
        self,
        dest: Path,
        *,
        uid_base: int,
        chown: bool | None = None,
        xattr_prefix: str | None = None,
        whiteouts: bool = True,
        into: CopyTarget | None = None,
    ) -> None:
        self.dest = dest
        # Copying into an existing directory (`docker cp`) rather than laying out a fresh tree.
        self.into = into
        # False for plain trees (volume backups): ``.wh.*`` members are then ordinary names.
        self.whiteouts = whiteouts
        self.uid_base = check_uid_base(uid_base)
        is_root = os.geteuid() == 0
        self.chown = is_root if chown is None else chown
        self.xattr_prefix = xattr_prefix or ("trusted.overlay." if is_root else "user.overlay.")
        self.stats = ExtractStats()
        self._root_fd = -1
        # Directories get their final mode and mtime at the end (children change mtimes, and a
        # read-only directory mode would stop us from creating its children as non-root).
        self._dirs: dict[tuple[str, ...], tuple[int, int | None]] = {}
        # Paths a hard link may point to: non-directories extracted from this layer.
        self._linkable: set[tuple[str, ...]] = set()

    # -- public -------------------------------------------------------------------------------

    def extract(self, stream: Readable | IO[bytes]) -> ExtractStats:
        """Read the tar ``stream`` to its end-of-archive and lay it out below ``dest``.

        Raises UnsafeArchive for a member that would escape or overwrite through a
        link, InvalidArchive for a malformed tar. On error ``dest`` is left
        partially written: the caller extracts into a scratch directory and
        removes it (see :func:`remove_tree`).
        """
        self._root_fd = os.dup(self.into.dir_fd) if self.into else os.open(self.dest, _O_DIR)
        try:
            if self.into is None:
                self._chown_fd(self._root_fd, 0, 0)
                self._dirs.setdefault((), (0o755, None))
            try:
                with tarfile.open(fileobj=cast(IO[bytes], stream), mode="r|") as tar:
                    for member in tar:
                        self._extract_member(tar, member)
            except TAR_ERRORS as exc:
                raise InvalidArchive(f"layer is not a valid tar archive: {exc}") from None
            self._finish_dirs()
        finally:
            os.close(self._root_fd)
            self._root_fd = -1
        return self.stats

    # -- members ------------------------------------------------------------------------------

    def _extract_member(self, tar: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        parts = member_parts(m.name, m.name)
        try:
            if not parts and self.into is not None:
                if not m.isdir():
                    raise UnsafeArchive(f"archive member {m.name!r} would replace the target directory")
                return  # the target directory keeps its owner and mode
            if not parts:
                if not m.isdir():
                    raise UnsafeArchive(f"archive member {m.name!r} would replace the layer's root directory")
                self._chown_fd(self._root_fd, m.uid, m.gid)
                self._dirs[()] = (self._mode(m), int(m.mtime))
                return
            leaf = parts[-1]
            if self.whiteouts and leaf.startswith(WHITEOUT_PREFIX):
                self._whiteout(m, parts)
                return
            if m.ischr() or m.isblk():
                if self.into is not None:
                    raise UnsafeArchive(
                        f"archive member {m.name!r} is a device node; copy regular files, directories "
                        "and links only"
                    )
                self.stats.skipped_devices.append(m.name)
                return
            if not (m.isdir() or m.isreg() or m.issym() or m.islnk() or m.isfifo()):
                raise InvalidArchive(f"archive member {m.name!r} has an unsupported type {m.type!r}")
            if m.islnk():
                target = member_parts(m.linkname, m.name)
                if target == parts:
                    return  # a hard link to itself changes nothing
            parent = self._open_dir(parts[:-1], m.name, create=True)
            try:
                if self.into is not None and self.into.no_overwrite_dir_non_dir:
                    self._check_kind(parent, parts[-1], m)
                if m.isdir():
                    self._mkdir(parent, parts, m)
                    return
                self._clear(parent, parts)
                if m.isreg():
                    self._write_file(tar, parent, parts, m)
                elif m.issym():
                    self._symlink(parent, parts, m)
                elif m.islnk():
                    self._hardlink(parent, parts, m)
                else:
                    os.mkfifo(leaf, 0o600, dir_fd=parent)
                    self._chown_at(parent, leaf, m.uid, m.gid)
                    os.chmod(leaf, self._mode(m), dir_fd=parent)
                    self._utime_at(parent, leaf, m)
                    self._linkable.add(parts)
                    self.stats.fifos += 1
            finally:
                os.close(parent)
        except OSError as exc:
            if exc.errno in _ARCHIVE_ERRNOS:
                raise InvalidArchive(f"cannot extract archive member {m.name!r}: {exc.strerror}") from None
            raise

    @staticmethod
    def _check_kind(parent: int, leaf: str, m: tarfile.TarInfo) -> None:
        """Conflict when ``m`` would replace a directory with a non-directory or the reverse."""
        try:
            existing_dir = stat.S_ISDIR(os.stat(leaf, dir_fd=parent, follow_symlinks=False).st_mode)
        except FileNotFoundError:
            return
        if existing_dir != m.isdir():
            what = "directory with a non-directory" if existing_dir else "non-directory with a directory"
            raise Conflict(f"cannot overwrite {what}: archive member {m.name!r}")

    def _mkdir(self, parent: int, parts: tuple[str, ...], m: tarfile.TarInfo) -> None:
        leaf = parts[-1]
        try:
            st = os.stat(leaf, dir_fd=parent, follow_symlinks=False)
            exists_as_dir = stat.S_ISDIR(st.st_mode)
        except FileNotFoundError:
            exists_as_dir = False
        if not exists_as_dir:
            self._clear(parent, parts)
            os.mkdir(leaf, 0o700, dir_fd=parent)
            self.stats.dirs += 1
        self._chown_at(parent, leaf, m.uid, m.gid)
        self._dirs[parts] = (self._mode(m), int(m.mtime))

    def _write_file(
        self, tar: tarfile.TarFile, parent: int, parts: tuple[str, ...], m: tarfile.TarInfo
    ) -> None:
        src = tar.extractfile(m)
        if src is None:
            raise InvalidArchive(f"archive member {m.name!r} has no data")
        fd = os.open(parts[-1], _O_NEWFILE, 0o600, dir_fd=parent)
        try:
            while chunk := src.read(CHUNK):
                view = memoryview(chunk)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
            self._chown_fd(fd, m.uid, m.gid)
            os.fchmod(fd, self._mode(m))
            os.utime(fd, ns=(int(m.mtime) * 10**9, int(m.mtime) * 10**9))
        finally:
            os.close(fd)
        self._linkable.add(parts)
        self.stats.files += 1

    def _symlink(self, parent: int, parts: tuple[str, ...], m: tarfile.TarInfo) -> None:
        if not m.linkname:
            raise InvalidArchive(f"archive member {m.name!r} is a symlink with an empty target")
        os.symlink(m.linkname, parts[-1], dir_fd=parent)
        self._chown_at(parent, parts[-1], m.uid, m.gid)
        self._utime_at(parent, parts[-1], m)
        self._linkable.add(parts)
        self.stats.symlinks += 1

    def _hardlink(self, parent: int, parts: tuple[str, ...], m: tarfile.TarInfo) -> None:
        target = member_parts(m.linkname, m.name)
        if target not in self._linkable:
            raise UnsafeArchive(
                f"archive member {m.name!r} is a hard link to {m.linkname!r}, which is not a file extracted "
                "earlier from this layer; refusing to link outside the layer"
            )
        src_dir = self._open_dir(target[:-1], m.name, create=False)
        try:
            os.link(target[-1], parts[-1], src_dir_fd=src_dir, dst_dir_fd=parent, follow_symlinks=False)
        finally:
            os.close(src_dir)
        self._linkable.add(parts)
        self.stats.hardlinks += 1

    def _whiteout(self, m: tarfile.TarInfo, parts: tuple[str, ...]) -> None:
        leaf = parts[-1]
        if leaf == OPAQUE_MARKER:
            fd = self._open_dir(parts[:-1], m.name, create=True)
            try:
                os.setxattr(fd, self.xattr_prefix + "opaque", b"y")
            finally:
                os.close(fd)
            self.stats.opaque_dirs += 1
            return
        if leaf.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            return  # aufs bookkeeping (.wh..wh.plnk ...): meaningless for overlayfs
        name = leaf[len(WHITEOUT_PREFIX) :]
        if name in ("", ".", ".."):
            raise UnsafeArchive(f"archive member {m.name!r} is a whiteout without a valid name")
        target = (*parts[:-1], name)
        parent = self._open_dir(parts[:-1], m.name, create=True)
        try:
            self._clear(parent, target)
            os.mknod(name, stat.S_IFCHR, os.makedev(0, 0), dir_fd=parent)
            self._chown_at(parent, name, m.uid, m.gid)
        finally:
            os.close(parent)
        self.stats.whiteouts += 1

    # -- helpers ------------------------------------------------------------------------------

    def _open_dir(self, parts: tuple[str, ...], member: str, *, create: bool) -> int:
        """An fd of the directory ``parts`` below dest, walked without following symlinks."""
        fd = os.dup(self._root_fd)
        try:
            for i, comp in enumerate(parts):
                try:
                    nfd = os.open(comp, _O_DIR, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(comp, 0o700, dir_fd=fd)
                    self._chown_at(fd, comp, 0, 0)
                    self._dirs.setdefault(parts[: i + 1], (0o755, None))
                    self.stats.dirs += 1
                    nfd = os.open(comp, _O_DIR, dir_fd=fd)
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    st = os.stat(comp, dir_fd=fd, follow_symlinks=False)
                    where = display(parts[: i + 1])
                    if stat.S_ISLNK(st.st_mode):
                        raise UnsafeArchive(
                            f"archive member {member!r} goes through the symlink {where!r}; "
                            "refusing to follow a symlink while extracting"
                        ) from None
                    raise UnsafeArchive(f"archive member {member!r}: {where!r} is not a directory") from None
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _clear(self, parent: int, parts: tuple[str, ...]) -> None:
        """Remove whatever this layer already has at ``parts`` (a later member replaces it)."""
        leaf = parts[-1]
        try:
            st = os.stat(leaf, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(leaf, dir_fd=parent)
        else:
            os.unlink(leaf, dir_fd=parent)
        n = len(parts)
        self._linkable = {p for p in self._linkable if p[:n] != parts}
        self._dirs = {p: v for p, v in self._dirs.items() if p[:n] != parts}

    def _finish_dirs(self) -> None:
        """Apply directory modes and mtimes, deepest first."""
        for parts in sorted(self._dirs, key=len, reverse=True):
            mode, mtime = self._dirs[parts]
            try:
                fd = self._open_dir(parts, display(parts), create=False)
            except FileNotFoundError:
                continue
            try:
                os.fchmod(fd, mode)
                if mtime is not None:
                    os.utime(fd, ns=(mtime * 10**9, mtime * 10**9))
            finally:
                os.close(fd)

    def _mode(self, m: tarfile.TarInfo) -> int:
        if m.mode & (stat.S_ISUID | stat.S_ISGID):
            self.stats.stripped_setid += 1
        return m.mode & _PERM_MASK

    def _ids(self, uid: int, gid: int) -> tuple[int, int]:
        if self.into is not None and self.into.owner is not None:
            uid, gid = self.into.owner
        if not 0 <= uid < ID_RANGE or not 0 <= gid < ID_RANGE:
            self.stats.clamped_ids += 1
        return shift_id(uid, self.uid_base), shift_id(gid, self.uid_base)

    def _chown_fd(self, fd: int, uid: int, gid: int) -> None:
        if self.chown:
            os.fchown(fd, *self._ids(uid, gid))

    def _chown_at(self, parent: int, name: str, uid: int, gid: int) -> None:
        if self.chown:
            os.chown(name, *self._ids(uid, gid), dir_fd=parent, follow_symlinks=False)

    @staticmethod
    def _utime_at(parent: int, name: str, m: tarfile.TarInfo) -> None:
        ns = int(m.mtime) * 10**9
        os.utime(name, ns=(ns, ns), dir_fd=parent, follow_symlinks=False)


def extract_layer(
    stream: Readable | IO[bytes],
    dest: Path,
    *,
    uid_base: int,
    chown: bool | None = None,
    xattr_prefix: str | None = None,
    whiteouts: bool = True,
    into: CopyTarget | None = None,
) -> ExtractStats:
    """Extract the layer tar ``stream`` into the existing directory ``dest`` (see :class:`LayerExtractor`).

    With ``whiteouts=False`` the tar is a plain tree (a volume backup): ``.wh.*``
    names are extracted as ordinary files. With ``into`` the archive goes into an existing
    directory (see :class:`CopyTarget`; ``dest`` then only names it in messages). Raises
    UnsafeArchive, InvalidArchive, Conflict (``into``), or InvalidSpec for a bad ``uid_base``.
    """
    return LayerExtractor(
        dest, uid_base=uid_base, chown=chown, xattr_prefix=xattr_prefix, whiteouts=whiteouts, into=into
    ).extract(stream)


def remove_tree(path: Path) -> None:
    """Delete ``path`` recursively without following symlinks or crossing into other mounts.

    Read-only directories (a layer's ``0555`` dirs when not root) are made
    writable first. Missing ``path`` is fine.
    """
    try:
        top = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(top.st_mode):
        os.unlink(path)
        return
    _remove_dir_contents(path, top.st_dev)
    os.rmdir(path)


def _remove_dir_contents(path: Path, dev: int) -> None:
    if os.geteuid() != 0:
        os.chmod(path, 0o700)
    with os.scandir(path) as it:
        entries = list(it)
    for entry in entries:
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            if st.st_dev != dev:
                raise OSError(errno.EBUSY, f"refusing to delete below a mount point: {entry.path}")
            _remove_dir_contents(Path(entry.path), dev)
            os.rmdir(entry.path)
        else:
            os.unlink(entry.path)
