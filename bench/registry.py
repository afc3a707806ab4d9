"""Push and pull throughput of a 200 MB image through a registry, beside a plain file copy.

Usage: .venv/bin/python bench/registry.py [--runs 3] [--mb 200]

The image has one layer of random (incompressible) bytes. Rows, each the
median of ``--runs``:

- ``cp``: copying the layer blob to another file (the disk's own speed);
- ``hpctl push`` / ``hpctl pull`` through HostPanel's registry (daphne serving
  ``hostpanel.asgi`` with a temporary database and registry root, a tenant API
  token, the Docker token flow), every pull into an empty store, every push
  into a new repository (no blob skipped, no mount);
- the same two through the CNCF distribution registry (Debian's docker-registry)
  where installed, to separate our client's cost from our server's;
- ``skopeo copy`` (OCI archive -> registry, registry -> OCI layout) where installed.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_table, summary, timed
from bench.panel_stack import free_port, manage, stop_process
from engine.engine import Engine
from engine.images.store import ImageStore
from engine.paths import EnginePaths
from engine.registry import Credentials, parse_registry_url, pull, push, remote_in

REPO = Path(__file__).resolve().parent.parent
IMAGE = "bench/random:1"


def _wait_http(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{what} did not answer at {url}")


@contextmanager
def _process(cmd: list[str], env: dict[str, str], log: Path, url: str, what: str) -> Iterator[None]:
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_http(url, proc, what)
        yield
    finally:
        stop_process(proc)


@contextmanager
def panel_registry(work: Path) -> Iterator[tuple[str, Credentials]]:
    """daphne serving the panel (fresh SQLite database and registry root); yields host:port and a token."""
    port = free_port()
    env = os.environ | {
        "DATABASE_URL": f"sqlite:///{work / 'panel.sqlite3'}",
        "HOSTPANEL_VAR_DIR": str(work / "var"),
        "HOSTPANEL_REGISTRY_ROOT": str(work / "registry"),
        "HOSTPANEL_REGISTRY_URL": f"http://127.0.0.1:{port}",
        "HOSTPANEL_SECRET_KEY": secrets.token_urlsafe(40),
        "HOSTPANEL_DEBUG": "0",
        "DJANGO_SETTINGS_MODULE": "hostpanel.settings",
    }
    manage(env, "migrate", "-v", "0")
    script = (
        "from django.contrib.auth import get_user_model\n"
        "from hostpanel.audit.services import Actor\n"
        "from hostpanel.tenants.models import Membership, Role, Tenant\n"
        "from hostpanel.tenants.services import create_token\n"
        "t = Tenant.objects.create(slug='bench', name='Bench')\n"
        "u = get_user_model().objects.create_user('bencher', password='unused-' + 'x' * 20)\n"
        "Membership.objects.create(user=u, tenant=t, role=Role.DEVELOPER)\n"
        "print(create_token(Actor(user=u), t, 'bench')[1])\n"
    )
    token = manage(env, "shell", "-c", script).strip().splitlines()[-1]
    cmd = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "hostpanel.asgi:application"]
    with _process(cmd, env, work / "daphne.log", f"http://127.0.0.1:{port}/v2/", "daphne"):
        yield f"127.0.0.1:{port}", Credentials("bench", token)


@contextmanager
def distribution_registry(work: Path) -> Iterator[str]:
    """Debian's docker-registry on a random port (no auth)."""
    port = free_port()
    config = work / "distribution.yml"
    config.write_text(
        "version: 0.1\nlog: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {work / 'distribution'}}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
    )
    cmd = ["docker-registry", "serve", str(config)]
    with _process(
        cmd, dict(os.environ), work / "distribution.log", f"http://127.0.0.1:{port}/v2/", "registry"
    ):
        yield f"127.0.0.1:{port}"


def make_image(engine: Engine, work: Path, mb: int) -> Path:
    """Import a one-layer image of ``mb`` MB of random bytes; return its layer blob's path."""
    import tarfile

    data = work / "random.bin"
    with data.open("wb") as f:
        for _ in range(mb):
            f.write(os.urandom(1 << 20))
    rootfs = work / "rootfs.tar"
    with tarfile.open(rootfs, "w") as tar:
        tar.add(data, arcname="random.bin")
    data.unlink()
    engine.images.import_archive(rootfs, IMAGE)
    rootfs.unlink()
    image = engine.images.resolve(IMAGE)
    from engine.images.oci import parse_manifest

    layer = parse_manifest(engine.images.blobs.read_bytes(image.digest)).layers[0]
    return engine.images.blobs.path(layer.digest)


def registry_rows(
    label: str, engine: Engine, host: str, creds: Credentials | None, work: Path, runs: int
) -> dict[str, list[float]]:
    counter = iter(range(10**6))
    endpoint = parse_registry_url(f"http://{host}")  # plain HTTP, known: no TLS probe in the timings
    repo = f"bench/{label.split()[0].lower()}"

    def do_push() -> None:
        target = remote_in(endpoint, f"{repo}-{next(counter)}:1")
        push(engine.images, IMAGE, target, credentials=creds)

    def do_pull() -> None:
        root = work / f"pull-{secrets.token_hex(4)}"
        paths = EnginePaths(root)
        paths.ensure()
        try:
            pull(ImageStore(paths), remote_in(endpoint, f"{repo}-0:1"), credentials=creds)
        finally:
            shutil.rmtree(root)

    return {f"hpctl push, {label}": timed(do_push, runs), f"hpctl pull, {label}": timed(do_pull, runs)}


def skopeo_rows(
    engine: Engine, host: str, creds: Credentials | None, work: Path, runs: int
) -> dict[str, list[float]]:
    archive = work / "image.tar"
    engine.images.export(IMAGE, archive)
    counter = iter(range(10**6))
    auth = ["--dest-creds", f"{creds.username}:{creds.password}"] if creds else []
    src_auth = ["--src-creds", f"{creds.username}:{creds.password}"] if creds else []

    def sk_push() -> None:
        dest = f"docker://{host}/bench/skopeo-{next(counter)}:1"
        subprocess.run(
            ["skopeo", "copy", "-q", "--dest-tls-verify=false", *auth, f"oci-archive:{archive}", dest],
            check=True,
        )

    def sk_pull() -> None:
        out = work / f"sk-{secrets.token_hex(4)}"
        subprocess.run(
            [
                "skopeo",
                "copy",
                "-q",
                "--src-tls-verify=false",
                *src_auth,
                "--dest-oci-accept-uncompressed-layers",
                f"docker://{host}/bench/skopeo-0:1",
                f"oci:{out}:x",
            ],
            check=True,
        )
        shutil.rmtree(out)

    return {
        "skopeo copy push, our registry": timed(sk_push, runs),
        "skopeo copy pull, our registry": timed(sk_pull, runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mb", type=int, default=200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hpbench-registry-", dir=os.environ.get("HPBENCH_DIR", "/var/tmp")))
    try:
        engine = Engine(root=work / "engine", instance=f"hpbench-{secrets.token_hex(3)}")
        blob = make_image(engine, work, args.mb)
        size = blob.stat().st_size
        samples: dict[str, list[float]] = {}
        copy_to = work / "copy.bin"

        def cp() -> None:
            subprocess.run(["cp", str(blob), str(copy_to)], check=True)
            copy_to.unlink()

        samples["cp (plain file copy)"] = timed(cp, args.runs)
        with ExitStack() as stack:
            host, creds = stack.enter_context(panel_registry(work))
            samples |= registry_rows("our registry", engine, host, creds, work, args.runs)
            if shutil.which("skopeo"):
                samples |= skopeo_rows(engine, host, creds, work, args.runs)
            else:
                print("skopeo: not installed, not compared", file=sys.stderr)
            if shutil.which("docker-registry"):
                dist = stack.enter_context(distribution_registry(work))
                samples |= registry_rows("distribution registry", engine, dist, None, work, args.runs)
            else:
                print("docker-registry: not installed, not compared", file=sys.stderr)
        rows = []
        for name, values in samples.items():
            _lo, med, _p95 = summary(values)
            rows.append([name, f"{med / 1000:.2f}", f"{size / 1e6 / (med / 1000):.0f}"])
        print(
            f"Registry throughput, one {size / 1e6:.0f} MB random layer (median of {args.runs}; "
            f"cores: {os.cpu_count()}, load: {os.getloadavg()[0]:.1f})"
        )
        print_table(["transfer", "seconds", "MB/s"], rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
