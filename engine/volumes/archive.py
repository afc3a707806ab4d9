"""Export a volume's tree as a tar, safely although its content is tenant-controlled.

The walk uses directory file descriptors and ``O_NOFOLLOW`` at every step and
describes each member from ``fstat`` of the opened file, so a container that
swaps a directory for a symlink to ``/`` while the export runs cannot make the
host read its own files into the archive. Owners are shifted back from the
tenant's host range to container ids (outside the range: nobody, 65534), so
the archive imports into any tenant's volume. Sockets and device nodes are
skipped. Import is :func:`engine.images.extract.extract_layer` with
``whiteouts=False``.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import tarfile
from typing import IO

from engine.errors import RuntimeFailure
from engine.images.extract import ID_RANGE, NOBODY

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MAX_DEPTH = 512
CHUNK = 1024 * 1024


class _ExactReader(io.RawIOBase):
    """Reads exactly ``size`` bytes from ``fd``: zero-pads a file that shrank meanwhile."""

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self._left = size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        want = self._left if n is None or n < 0 else min(n, self._left)
        data = os.read(self._fd, min(want, CHUNK))
        if not data:
            data = b"\0" * min(want, CHUNK)
        self._left -= len(data)
        return data


class TreeExporter:
    """Write the tree below a directory fd into a tar stream (see module doc)."""

    def __init__(self, tar: tarfile.TarFile, uid_base: int) -> None:
        self.tar = tar
        self.uid_base = uid_base
        self.members = 0
        self._links: dict[tuple[int, int], str] = {}

    def _id(self, host_id: int) -> int:
        value = host_id - self.uid_base
        return value if 0 <= value < ID_RANGE else NOBODY

    def _info(self, name: str, st: os.stat_result) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid = self._id(st.st_uid), self._id(st.st_gid)
        info.uname = info.gname = ""
        info.mtime = int(st.st_mtime)
        return info

    def add_dir(self, fd: int, name: str, depth: int = 0) -> None:
        """Add the directory open at ``fd`` (archive name ``name``) and everything below it."""
        if depth > MAX_DEPTH:
            raise RuntimeFailure(f"cannot export {name!r}: directories nest deeper than {MAX_DEPTH}")
        info = self._info(name or ".", os.fstat(fd))
        info.type = tarfile.DIRTYPE
        self.tar.addfile(info)
        self.members += 1
        for entry in sorted(os.listdir(fd)):
            self.add_entry(fd, entry, f"{name}/{entry}" if name else entry, depth)

    def add_entry(self, dir_fd: int, entry: str, name: str, depth: int = 0) -> None:
        """Add ``entry`` of the directory open at ``dir_fd`` as archive member ``name``.

        Never follows a symlink (it becomes a symlink member); directories are walked below;
        sockets and device nodes are skipped, and so is an entry removed meanwhile.
        """
        try:
            st = os.stat(entry, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return  # removed while we walk
        if stat.S_ISDIR(st.st_mode):
            try:
                sub = os.open(entry, _O_DIR, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                    return  # replaced while we walk; never followed
                raise
            try:
                self.add_dir(sub, name, depth + 1)
            finally:
                os.close(sub)
        elif stat.S_ISREG(st.st_mode):
            self._add_file(dir_fd, entry, name)
        elif stat.S_ISLNK(st.st_mode):
            try:
                target = os.readlink(entry, dir_fd=dir_fd)
            except OSError:
                return
            info = self._info(name, st)
            info.type, info.linkname = tarfile.SYMTYPE, target
            self.tar.addfile(info)
            self.members += 1
        elif stat.S_ISFIFO(st.st_mode):
            info = self._info(name, st)
            info.type = tarfile.FIFOTYPE
            self.tar.addfile(info)
            self.members += 1
        # sockets and device nodes are not data: skipped

    def _add_file(self, dir_fd: int, entry: str, name: str) -> None:
        try:
            fd = os.open(entry, _O_FILE, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENXIO):
                return
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return
            info = self._info(name, st)
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self._links:
                info.type, info.linkname = tarfile.LNKTYPE, self._links[key]
                self.tar.addfile(info)
            else:
                if st.st_nlink > 1:
                    self._links[key] = name
                info.size = st.st_size
                self.tar.addfile(info, _ExactReader(fd, st.st_size))
            self.members += 1
        finally:
            os.close(fd)


def export_tree(directory: str | os.PathLike[str], out: IO[bytes], uid_base: int) -> int:
    """Write the tree below ``directory`` as a tar stream to ``out``; returns the member count.

    Raises RuntimeFailure for a tree nested too deep, OSError for I/O errors.
    """
    fd = os.open(directory, _O_DIR)
    try:
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            exporter = TreeExporter(tar, uid_base)
            exporter.add_dir(fd, "")
            return exporter.members
    finally:
        os.close(fd)
