"""Build base images on the host without a registry: busybox (from /bin/busybox) and debian (debootstrap)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import tarfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Protocol, cast

from engine.errors import EngineError, HostNotReady, InvalidSpec
from engine.images.oci import iso_from_timestamp

BUSYBOX = Path("/bin/busybox")
DEBIAN_FALLBACK_MIRROR = "http://deb.debian.org/debian"
APT_SOURCES = Path("/etc/apt")
_PKG_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")


class Writable(Protocol):
    """Anything with ``write(bytes)`` (a file, a BlobWriter)."""

    def write(self, data: bytes, /) -> object:
        """Write ``data``."""
        ...


# (path, mode) of the directories of the busybox image; /tmp is world-writable and sticky.
_BUSYBOX_DIRS = (
    ("bin", 0o755),
    ("dev", 0o755),
    ("etc", 0o755),
    ("home", 0o755),
    ("proc", 0o555),
    ("root", 0o700),
    ("sbin", 0o755),
    ("sys", 0o555),
    ("tmp", 0o1777),
    ("usr", 0o755),
    ("usr/bin", 0o755),
    ("usr/sbin", 0o755),
    ("var", 0o755),
    ("var/log", 0o755),
    ("var/tmp", 0o1777),
    ("var/spool", 0o755),
    ("var/www", 0o755),
)
_BUSYBOX_FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    "etc/group": "root:x:0:\nnobody:x:65534:\nnogroup:x:65534:\n",
    "etc/shadow": "root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n",
    "etc/hostname": "busybox\n",
    "etc/hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    "etc/resolv.conf": "",
}


def busybox_applets(busybox: Path = BUSYBOX) -> list[str]:
    """The applet paths (``bin/sh``, ``usr/bin/awk`` ...) from ``busybox --list-full``.

    Raises HostNotReady if the binary is missing or does not run.
    """
    if not busybox.is_file():
        raise HostNotReady(f"{busybox} is missing; install it with: apt-get install busybox-static")
    try:
        out = subprocess.run(
            [str(busybox), "--list-full"], check=True, capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise HostNotReady(f"cannot run {busybox} --list-full ({exc}); install busybox-static") from None
    applets = []
    for line in out.splitlines():
        path = line.strip().lstrip("/")
        if path and ".." not in path.split("/") and path != "bin/busybox":
            applets.append(path)
    return sorted(set(applets))


def _is_static(path: Path) -> bool:
    """Whether the ELF at ``path`` has no program interpreter (statically linked)."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    return head.startswith(b"\x7fELF") and b"/ld-linux" not in head and b"ld-musl" not in head


def write_busybox_rootfs(out: Writable, busybox: Path = BUSYBOX) -> int:
    """Write a deterministic busybox root filesystem tar to ``out``; return its mtime (epoch seconds).

    Same busybox binary -> same bytes (sorted members, the binary's mtime on
    every member, root-owned). Raises HostNotReady if busybox is unusable.
    """
    applets = busybox_applets(busybox)
    if not _is_static(busybox):
        raise HostNotReady(
            f"{busybox} is dynamically linked; install the static one: apt-get install busybox-static"
        )
    mtime = int(busybox.stat().st_mtime)
    dirs = dict(_BUSYBOX_DIRS)
    for applet in applets:
        parent = os.path.dirname(applet)
        while parent and parent not in dirs:
            dirs[parent] = 0o755
            parent = os.path.dirname(parent)

    def info(name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.size, ti.linkname, ti.mtime = kind, mode, size, link, mtime
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = "root"
        return ti

    entries: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}
    for d, mode in dirs.items():
        entries[d] = (info(d, tarfile.DIRTYPE, mode), None)
    for name, text in _BUSYBOX_FILES.items():
        data = text.encode()
        entries[name] = (
            info(name, tarfile.REGTYPE, 0o640 if name == "etc/shadow" else 0o644, len(data)),
            data,
        )
    size = busybox.stat().st_size
    entries["bin/busybox"] = (info("bin/busybox", tarfile.REGTYPE, 0o755, size), None)
    for applet in applets:
        entries.setdefault(applet, (info(applet, tarfile.SYMTYPE, 0o777, link="/bin/busybox"), None))
    with tarfile.open(fileobj=cast(IO[bytes], out), mode="w|", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(info(".", tarfile.DIRTYPE, 0o755))
        for name in sorted(entries):
            ti, content = entries[name]
            if name == "bin/busybox":
                with open(busybox, "rb") as f:
                    tar.addfile(ti, f)
            else:
                tar.addfile(ti, io.BytesIO(content) if content is not None else None)
    return mtime


def busybox_created(mtime: int) -> str:
    """The ``created`` of a busybox image: the binary's mtime (so bootstrapping is reproducible)."""
    return iso_from_timestamp(mtime)


# -- debian -----------------------------------------------------------------------------------


def _deb822_stanzas(text: str) -> Iterable[dict[str, str]]:
    stanza: dict[str, str] = {}
    key = ""
    for raw in [*text.splitlines(), ""]:
        line = raw.rstrip()
        if line.startswith("#"):
            continue
        if not line.strip():
            if stanza:
                yield stanza
            stanza, key = {}, ""
            continue
        if line[0].isspace() and key:
            stanza[key] += " " + line.strip()
            continue
        k, sep, v = line.partition(":")
        if sep:
            key = k.strip().lower()
            stanza[key] = v.strip()


def host_debian_mirror(suite: str = "bookworm", apt_dir: Path = APT_SOURCES) -> str:
    """The Debian mirror the host's apt uses for ``suite`` (deb822 ``.sources`` or one-line ``.list``).

    Only ``sources.list`` and ``sources.list.d/*.list|*.sources`` are read; an
    entry counts if it is enabled, of type ``deb`` and lists ``suite`` exactly.
    Falls back to http://deb.debian.org/debian.
    """
    files: list[Path] = []
    if (apt_dir / "sources.list").is_file():
        files.append(apt_dir / "sources.list")
    d = apt_dir / "sources.list.d"
    if d.is_dir():
        files.extend(sorted(p for p in d.iterdir() if p.suffix in (".list", ".sources") and p.is_file()))
    for f in files:
        try:
            text = f.read_text(errors="replace")
        except OSError:
            continue
        if f.suffix == ".sources":
            for st in _deb822_stanzas(text):
                if st.get("enabled", "yes").lower() == "no" or "deb" not in st.get("types", "").split():
                    continue
                if suite in st.get("suites", "").split():
                    for uri in st.get("uris", "").split():
                        if uri.startswith(("http://", "https://", "file:/")):
                            return uri.rstrip("/")
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
                if (
                    len(words) >= 3
                    and words[0] == "deb"
                    and words[2] == suite
                    and words[1].startswith(("http://", "https://", "file:/"))
                ):
                    return words[1].rstrip("/")
    return DEBIAN_FALLBACK_MIRROR


def check_packages(packages: Sequence[str]) -> list[str]:
    """Return ``packages`` if each is a valid Debian package name, else raise InvalidSpec."""
    for p in packages:
        if not _PKG_RE.match(p):
            raise InvalidSpec(f"invalid Debian package name {p!r}")
    return list(packages)


def run_debootstrap(target: Path, *, suite: str, mirror: str, include: Sequence[str]) -> None:
    """Run ``debootstrap --variant=minbase`` into ``target``, then drop apt caches and lists.

    Raises HostNotReady if debootstrap is missing or not root, EngineError if it fails.
    """
    if os.geteuid() != 0:
        raise HostNotReady("bootstrapping debian needs root (debootstrap chroots and chowns)")
    exe = next((p for p in ("/usr/sbin/debootstrap", "/usr/bin/debootstrap") if os.path.exists(p)), None)
    if exe is None:
        raise HostNotReady("debootstrap is missing; install it with: apt-get install debootstrap")
    cmd = [exe, "--variant=minbase"]
    if include:
        cmd.append("--include=" + ",".join(check_packages(include)))
    cmd += [suite, str(target), mirror]
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=1800,
            env={**os.environ, "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"},
        )
    except subprocess.TimeoutExpired:
        raise EngineError(f"debootstrap {suite} from {mirror} did not finish in 30 minutes") from None
    finally:
        unmount_below(target)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise EngineError(f"debootstrap {suite} from {mirror} failed (exit {proc.returncode}):\n{tail}")
    drop_apt_caches(target)


def unmount_below(target: Path) -> None:
    """Lazily unmount anything still mounted below ``target`` (debootstrap mounts /proc, /sys)."""
    prefix = str(target.resolve()) + "/"
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return
    points = []
    for line in lines:
        fields = line.split()
        if len(fields) > 4:
            point = fields[4].replace("\\040", " ")
            if point.startswith(prefix):
                points.append(point)
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def drop_apt_caches(root: Path) -> None:
    """Delete downloaded .debs, apt's binary caches and package lists below ``root``."""
    for d, pattern in (
        ("var/cache/apt/archives", "*.deb"),
        ("var/cache/apt", "*.bin"),
        ("var/lib/apt/lists", "*_*"),
    ):
        base = root / d
        if base.is_dir() and not base.is_symlink():
            for p in base.glob(pattern):
                if p.is_file() and not p.is_symlink():
                    p.unlink()


def write_tree_tar(
    root: Path, out: Writable, *, skip_contents_of: Sequence[str] = ("dev", "proc", "sys")
) -> None:
    """Pack the directory ``root`` into a tar on ``out`` (sorted, hard links kept, devices skipped).

    The contents of ``skip_contents_of`` (the runtime mounts them) are left out;
    the directories themselves are kept. Symlinks are stored, never followed.
    """
    skip = {root / s for s in skip_contents_of}
    with tarfile.open(fileobj=cast(IO[bytes], out), mode="w|", format=tarfile.PAX_FORMAT) as tar:

        def add(path: Path, arcname: str) -> None:
            ti = tar.gettarinfo(str(path), arcname)
            if ti is None or ti.ischr() or ti.isblk():  # sockets, devices
                return
            if ti.isreg():
                with open(path, "rb") as f:
                    tar.addfile(ti, f)
            else:
                tar.addfile(ti)
            if ti.isdir() and path not in skip:
                with os.scandir(path) as it:
                    children = sorted(it, key=lambda e: e.name)
                for child in children:
                    add(Path(child.path), f"{arcname}/{child.name}" if arcname != "." else child.name)

        add(root, ".")
