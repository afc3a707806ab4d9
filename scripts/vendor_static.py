"""Fetch the browser libraries the dashboard serves from static/vendor/ (npm registry tarballs).

Stdlib only, idempotent: each package is downloaded once, checked against the
sha512 integrity the npm registry published for it, and only the files the
pages load are unpacked. `make install` runs it; the files are not committed
(they are other projects' code, fetched at install time).

    python3 scripts/vendor_static.py [--dest static/vendor]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import os
import sys
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REGISTRY = os.environ.get("NPM_REGISTRY", "https://registry.npmjs.org")


@dataclass(frozen=True)
class NpmPackage:
    """One pinned npm tarball and the files of it that the pages use."""

    name: str
    version: str
    integrity: str  # the registry's "dist.integrity" (sha512, base64)
    files: tuple[str, ...]  # paths inside the tarball's package/ directory
    into: str  # directory under the destination

    @property
    def tarball_url(self) -> str:
        basename = self.name.rsplit("/", 1)[-1]
        return f"{REGISTRY}/{self.name}/-/{basename}-{self.version}.tgz"


PACKAGES = (
    NpmPackage(
        "htmx.org",
        "2.0.11",
        "sha512-Thx/WtpeOQqSrqBCw/A1cwGJGg4UrVa3+sW0GmrM3p4gJgO89ecH4qtbnyzDDWFvBTqjnIMCgELTNt636dtamA==",
        ("dist/htmx.min.js",),
        "htmx",
    ),
    NpmPackage(
        "@xterm/xterm",
        "6.0.0",
        "sha512-TQwDdQGtwwDt+2cgKDLn0IRaSxYu1tSUjgKarSDkUM0ZNiSRXFpjxEsvc/Zgc5kq5omJ+V0a8/kIM2WD3sMOYg==",
        ("lib/xterm.js", "css/xterm.css"),
        "xterm",
    ),
    NpmPackage(
        "@xterm/addon-fit",
        "0.11.0",
        "sha512-jYcgT6xtVYhnhgxh3QgYDnnNMYTcf8ElbxxFzX0IZo+vabQqSPAjC3c1wJrKB5E19VwQei89QCiZZP86DCPF7g==",
        ("lib/addon-fit.js",),
        "xterm",
    ),
)


def check_integrity(data: bytes, integrity: str) -> None:
    """Raise ValueError unless ``data`` has the sha512 the registry published."""
    algorithm, _, expected = integrity.partition("-")
    if algorithm != "sha512":
        raise ValueError(f"unsupported integrity algorithm {algorithm!r}")
    actual = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if actual != expected:
        raise ValueError(f"integrity mismatch: expected sha512-{expected}, got sha512-{actual}")


def stamp_path(dest: Path, package: NpmPackage) -> Path:
    return dest / ".stamps" / f"{package.name.replace('/', '__')}@{package.version}"


def vendor(package: NpmPackage, dest: Path) -> bool:
    """Unpack ``package``'s files under ``dest``; False when already there."""
    stamp = stamp_path(dest, package)
    targets = [dest / package.into / Path(f).name for f in package.files]
    if stamp.exists() and all(t.exists() for t in targets):
        return False
    with urllib.request.urlopen(package.tarball_url, timeout=60) as response:
        data = response.read()
    check_integrity(data, package.integrity)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for inner, target in zip(package.files, targets, strict=True):
            member = tar.extractfile(f"package/{inner}")
            if member is None:
                raise ValueError(f"{package.name}@{package.version} has no file {inner}")
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(target.suffix + ".tmp")
            tmp.write_bytes(member.read())
            tmp.replace(target)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.touch()
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parent.parent / "static" / "vendor"
    parser.add_argument("--dest", type=Path, default=default)
    args = parser.parse_args(argv)
    for package in PACKAGES:
        try:
            fetched = vendor(package, args.dest)
        except (OSError, ValueError) as exc:
            print(f"vendor_static: {package.name}@{package.version}: {exc}", file=sys.stderr)
            print(f"vendor_static: check that {REGISTRY} is reachable (or set NPM_REGISTRY)", file=sys.stderr)
            return 1
        if fetched:
            print(f"vendor_static: {package.name}@{package.version} -> {args.dest / package.into}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
