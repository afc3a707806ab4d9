"""Secrets as files: a small tmpfs per container, bound read-only at ``/run/secrets``.

How a container's secrets live:

- at create, a tmpfs (nosuid, nodev, noexec, a few pages) is mounted at
  ``<root>/containers/<id>/secrets`` with its root directory mode 0500, and each
  secret is written there as a file of mode 0400; both belong to the
  container's process user as the host sees it (the tenant's uid base plus the
  user's uid and gid), so that user reads them and no other non-root user in
  the container can. ``config.json`` only names the bind mount; the values are
  never on disk, in ``container.json`` or in a log line or error message;
- the tmpfs stays mounted as long as the container exists (created, running or
  exited), so a stop/start and a restart of the engine process keep them;
- it is unmounted when the container is removed, by every failure path of
  create, and by ``recover()`` for bundles an interrupted create left;
- after a host reboot the tmpfs is gone and the engine cannot bring the values
  back: starting such a container raises Conflict, and the caller removes it
  and creates it again with its secrets.

Kernel calls go through :class:`SecretsKernel` so the logic is unit-tested
without root.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from engine.errors import Conflict, InvalidSpec, RuntimeFailure
from engine.runtime import mounts
from engine.runtime.model import SecretFile
from engine.runtime.oci_spec import BindMount

SECRETS_TARGET = "/run/secrets"
MAX_SECRETS = 256
MAX_TOTAL_BYTES = 1024 * 1024
DIRECTORY_MODE = 0o500
FILE_MODE = 0o400
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class SecretsKernel(Protocol):
    """The kernel calls secrets need (the host's, or a fake in unit tests)."""

    def mount_tmpfs(self, target: Path, *, size: int, mode: int, uid: int, gid: int, max_inodes: int) -> None:
        """Mount a nosuid,nodev,noexec tmpfs at ``target``."""

    def fs_type(self, path: Path) -> str | None:
        """The type of the file system mounted at exactly ``path``, None when nothing is."""

    def unmount(self, target: Path) -> None:
        """Lazily unmount ``target``; not mounted is fine."""


class HostKernel:
    """The real kernel (engine.runtime.mounts)."""

    def mount_tmpfs(self, target: Path, *, size: int, mode: int, uid: int, gid: int, max_inodes: int) -> None:
        mounts.mount_tmpfs(target, size=size, mode=mode, uid=uid, gid=gid, max_inodes=max_inodes)

    def fs_type(self, path: Path) -> str | None:
        return mounts.fs_type(path)

    def unmount(self, target: Path) -> None:
        mounts.unmount(target)


HOST_KERNEL = HostKernel()


def validate_secrets(
    secrets: Iterable[SecretFile], mount_targets: Iterable[str] = ()
) -> tuple[SecretFile, ...]:
    """Check a container's secrets; return them as a tuple.

    Each name becomes the file ``/run/secrets/<name>``: letters, digits, '_',
    '.' and '-', starting with a letter or digit (so no '/', '.' or '..'), at
    most 128 characters, each name once. At most 256 secrets and 1 MiB in all.
    A mount on or below /run/secrets (``mount_targets``) would clash. Raises
    InvalidSpec naming the bad secret (never showing its value).
    """
    result = tuple(secrets)
    if not result:
        return result
    seen: set[str] = set()
    for secret in result:
        if not isinstance(secret, SecretFile):
            raise InvalidSpec(f"invalid secret {type(secret).__name__}: give SecretFile(name, data)")
        name = secret.name
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise InvalidSpec(
                f"invalid secret name {name!r}: it becomes the file {SECRETS_TARGET}/<name>, so use "
                "letters, digits, '_', '.' or '-', starting with a letter or digit (no '/'), "
                "at most 128 characters"
            )
        if not isinstance(secret.data, bytes):
            raise InvalidSpec(f"secret {name!r}: its data must be bytes, not {type(secret.data).__name__}")
        if name in seen:
            raise InvalidSpec(
                f"secret {name!r} is given twice: each name becomes one file in {SECRETS_TARGET}"
            )
        seen.add(name)
    if len(result) > MAX_SECRETS:
        raise InvalidSpec(f"{len(result)} secrets: a container may have at most {MAX_SECRETS}")
    total = sum(len(s.data) for s in result)
    if total > MAX_TOTAL_BYTES:
        raise InvalidSpec(
            f"secrets of {total} bytes in all: at most {MAX_TOTAL_BYTES} bytes fit in {SECRETS_TARGET}; "
            "put large files in a volume"
        )
    for target in mount_targets:
        if target == SECRETS_TARGET or target.startswith(SECRETS_TARGET + "/"):
            raise InvalidSpec(
                f"a mount on {target} clashes with the container's secrets at {SECRETS_TARGET}; "
                "mount it elsewhere"
            )
    return result


def tmpfs_size(secrets: Sequence[SecretFile], page_size: int | None = None) -> int:
    """Bytes the tmpfs needs: each file rounded up to whole pages, plus one spare page."""
    page = page_size or os.sysconf("SC_PAGE_SIZE")
    return sum(-(-len(s.data) // page) * page for s in secrets) + page


def mount_secrets(
    directory: Path,
    secrets: Sequence[SecretFile],
    *,
    uid: int,
    gid: int,
    kernel: SecretsKernel = HOST_KERNEL,
) -> BindMount:
    """Mount the secrets tmpfs at ``directory`` and write ``secrets`` into it; returns the bind mount.

    ``uid``/``gid`` are host ids (the tenant's base plus the process user's
    ids). Writes nothing unless ``directory`` really is a tmpfs. Raises
    RuntimeFailure (mount refused, a file cannot be written); then nothing
    stays mounted.
    """
    directory.mkdir(mode=0o700, exist_ok=True)
    kernel.mount_tmpfs(
        directory,
        size=tmpfs_size(secrets),
        mode=DIRECTORY_MODE,
        uid=uid,
        gid=gid,
        max_inodes=len(secrets) + 16,
    )
    try:
        if kernel.fs_type(directory) != "tmpfs":
            raise RuntimeFailure(
                f"{directory} is not a tmpfs after mounting one; refusing to write secrets to disk"
            )
        for secret in secrets:
            _write_file(directory / secret.name, secret, uid, gid)
    except BaseException:
        with contextlib.suppress(RuntimeFailure):
            unmount_secrets(directory, kernel)
        raise
    return BindMount(str(directory), SECRETS_TARGET, read_only=True, no_exec=True)


def _write_file(path: Path, secret: SecretFile, uid: int, gid: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    except OSError as exc:
        raise RuntimeFailure(f"cannot write secret {secret.name!r}: {os.strerror(exc.errno or 0)}") from None
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, FILE_MODE)
        view = memoryview(secret.data)
        while view:
            view = view[os.write(fd, view) :]
    except OSError as exc:
        raise RuntimeFailure(f"cannot write secret {secret.name!r}: {os.strerror(exc.errno or 0)}") from None
    finally:
        os.close(fd)


def unmount_secrets(directory: Path, kernel: SecretsKernel = HOST_KERNEL) -> None:
    """Unmount the secrets tmpfs at ``directory`` (every layer); not mounted is fine.

    Raises RuntimeFailure when something stays mounted there.
    """
    for _ in range(8):
        if kernel.fs_type(directory) is None:
            return
        kernel.unmount(directory)
    if kernel.fs_type(directory) is not None:
        raise RuntimeFailure(f"cannot unmount the secrets at {directory}: {os.strerror(errno.EBUSY)}")


def secrets_present(directory: Path, kernel: SecretsKernel = HOST_KERNEL) -> bool:
    """Whether the secrets tmpfs is (still) mounted at ``directory``."""
    return kernel.fs_type(directory) == "tmpfs"


def require_secrets(
    container_name: str, directory: Path, names: Sequence[str], kernel: SecretsKernel = HOST_KERNEL
) -> None:
    """Raise Conflict when a container with secrets lost them (the host restarted since its create).

    The values were only ever in memory, so the engine cannot restore them:
    remove the container and create it again with its secrets.
    """
    if names and not secrets_present(directory, kernel):
        raise Conflict(
            f"container {container_name} cannot start: its secrets ({', '.join(names)}) were kept only "
            "in memory and are gone (the host restarted); remove it and create it again with its secrets"
        )
