"""`hpctl images`, `image import/export/inspect/prune`, `tag`, `rmi` through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.cli import main
from tests.engine.images_fixtures import ArchiveImage, docker_save, f, rootfs, tar_bytes


def hpctl(root: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["--root", str(root), *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture()
def archive(tmp_path: Path) -> Path:
    img = ArchiveImage(
        layers=[rootfs(), tar_bytes([f("app", b"x" * 3000)])],
        tags=["docker.io/library/app:1"],
        created="2000-01-01T00:00:00Z",
    )
    return docker_save(tmp_path / "app.tar", [img])


def test_images_table(root: Path, archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert hpctl(root, capsys, "image", "import", str(archive)) == (0, "Loaded image: app:1\n", "")
    code, out, _ = hpctl(root, capsys, "tag", "app:1", "registry.example:5000/team/app:2.0")
    assert code == 0 and out == ""
    dangling = ArchiveImage(layers=[rootfs("d")])
    code, out, _ = hpctl(root, capsys, "image", "import", str(docker_save(tmp_path / "d.tar", [dangling])))
    assert out.startswith("Loaded image ID: sha256:")

    code, out, _ = hpctl(root, capsys, "images")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "ID", "CREATED", "SIZE"]
    rows = [line.split() for line in lines[1:]]
    assert ["app", "1"] in [r[:2] for r in rows]
    assert ["registry.example:5000/team/app", "2.0"] in [r[:2] for r in rows]
    assert ["<none>", "<none>"] in [r[:2] for r in rows]
    app_row = next(line for line in lines if line.startswith("app "))
    assert "years ago" in app_row
    assert "kB" in app_row
    assert len({r[2] for r in rows}) == 2  # two image ids, 12 hex digits each
    assert all(len(r[2]) == 12 for r in rows)

    code, ls_out, _ = hpctl(root, capsys, "image", "ls")
    assert ls_out == out
    code, out, _ = hpctl(root, capsys, "images", "--json")
    data = json.loads(out)
    assert {tuple(i["repo_tags"]) for i in data} == {("app:1", "registry.example:5000/team/app:2.0"), ()}
    code, out, _ = hpctl(root, capsys, "images", "-q")
    assert len(out.split()) == 2


def test_inspect_export_rmi_prune(
    root: Path, archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hpctl(root, capsys, "image", "import", str(archive), "mine:v1")
    code, out, _ = hpctl(root, capsys, "image", "inspect", "mine:v1")
    info = json.loads(out)
    assert info["repo_tags"] == ["mine:v1"] and info["config"]["cmd"] == ["sh"] and info["os"] == "linux"

    code, out, _ = hpctl(root, capsys, "image", "export", "mine:v1", str(tmp_path / "out.tar"))
    assert code == 0 and (tmp_path / "out.tar").is_file()

    hpctl(root, capsys, "tag", "mine:v1", "mine:v2")
    code, out, err = hpctl(root, capsys, "rmi", info["id"])
    assert code == 125 and "use -f" in err and out == ""
    code, out, err = hpctl(root, capsys, "rmi", "nope:1", "mine:v2")
    assert code == 125
    assert "no image 'nope:1' on this host" in err
    assert out == "Untagged: mine:v2\n"  # carried on after the error
    code, out, err = hpctl(root, capsys, "image", "rm", "-f", "mine:v1")
    assert code == 0 and out.splitlines() == ["Untagged: mine:v1", f"Deleted: {info['id']}"]

    hpctl(root, capsys, "image", "import", str(archive))
    code, out, _ = hpctl(root, capsys, "image", "prune")
    assert out == "Removed 0 images (0B)\n"
    code, out, _ = hpctl(root, capsys, "image", "prune", "--all")
    assert out.splitlines()[:2] == ["Untagged: app:1", f"Deleted: {info['id']}"]
    code, out, _ = hpctl(root, capsys, "images")
    assert out.splitlines()[1:] == []


def test_errors_are_reported_with_exit_codes(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = hpctl(root, capsys, "image", "inspect", "busybox")
    assert code == 125 and "hpctl image bootstrap busybox" in err
    junk = tmp_path / "junk"
    junk.write_bytes(b"junk" * 1000)
    code, _, err = hpctl(root, capsys, "image", "import", str(junk), "x:1")
    assert code == 125 and "not a readable image archive" in err
    code, _, err = hpctl(root, capsys, "image", "bootstrap", "busybox", "--with", "python3")
    assert code == 125 and "--with only applies" in err


def test_rmi_and_prune_respect_images_in_use(
    root: Path, archive: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.engine import Engine

    hpctl(root, capsys, "image", "import", str(archive))
    image_id = json.loads(hpctl(root, capsys, "image", "inspect", "app:1")[1])["id"]
    monkeypatch.setattr(Engine, "image_ids_in_use", lambda self: {image_id}, raising=False)
    code, _, err = hpctl(root, capsys, "rmi", "app:1")
    assert code == 125 and "used by a container" in err
    code, out, _ = hpctl(root, capsys, "image", "prune", "-a")
    assert out == "Removed 0 images (0B)\n"
    code, out, _ = hpctl(root, capsys, "rmi", "-f", "app:1")
    assert out == "Untagged: app:1\n"
    code, out, _ = hpctl(root, capsys, "images")
    assert out.splitlines()[1].split()[:2] == ["<none>", "<none>"]


def test_tenant_scoping(
    root: Path, archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--tenant T` acts as the tenant: its own names and the base set; the operator sees everything."""
    assert hpctl(root, capsys, "image", "import", str(archive))[0] == 0  # app:1, a base image
    mine = docker_save(tmp_path / "m.tar", [ArchiveImage(layers=[rootfs("m")], tags=["beta/app:1"])])
    code, out, _ = hpctl(root, capsys, "image", "import", "--tenant", "alpha", str(mine), "alpha/app:1")
    assert (code, out) == (0, "Loaded image: alpha/app:1\n")
    code, _, err = hpctl(root, capsys, "image", "import", "--tenant", "alpha", str(mine), "app:1")
    assert code != 0 and "tenant 'alpha' cannot name an image 'app:1'" in err
    code, _, err = hpctl(root, capsys, "image", "import", "--tenant", "alpha", str(mine))
    assert code != 0 and "needs the name" in err
    assert hpctl(root, capsys, "tag", "--tenant", "alpha", "app:1", "alpha/base-copy:1")[0] == 0
    code, _, err = hpctl(root, capsys, "tag", "--tenant", "beta", "alpha/app:1", "beta/stolen:1")
    assert code != 0 and "no image 'alpha/app:1' for tenant 'beta'" in err
    names = {
        tuple(i["repo_tags"])
        for i in json.loads(hpctl(root, capsys, "images", "--json", "--tenant", "beta")[1])
    }
    assert names == {("app:1",)}
    everything = json.loads(hpctl(root, capsys, "images", "--json")[1])
    assert {t for i in everything for t in i["repo_tags"]} == {"app:1", "alpha/app:1", "alpha/base-copy:1"}
    code, _, err = hpctl(root, capsys, "image", "inspect", "--tenant", "beta", "alpha/app:1")
    assert code != 0 and "for tenant 'beta'" in err
    # refused before any connection: the local name is not alpha's
    code, _, err = hpctl(root, capsys, "pull", "--tenant", "alpha", "127.0.0.1:9/beta/app:1")
    assert code != 0 and "tenant 'alpha' cannot name an image '127.0.0.1:9/beta/app:1'" in err
