"""`hpctl volume ...` and `hpctl run -v/--tmpfs` through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.cli import main
from engine.engine import Engine
from engine.images.model import Image
from engine.volumes import disk

pytestmark = pytest.mark.privileged


def hpctl(engine: Engine, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["--root", str(engine.paths.root), "--instance", engine.instance, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_volume_commands(
    engine: Engine, busybox: Image, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert hpctl(engine, capsys, "volume", "create", "--size", "16m", "--tenant", "acme", "web") == (
        0,
        "web\n",
        "",
    )
    assert hpctl(engine, capsys, "volume", "create", "plain")[0] == 0
    code, out, err = hpctl(
        engine, capsys, "run", "--rm", "--network", "none", "--tenant", "acme", "-v", "web:/data",
        "--tmpfs", "/run:size=1m,mode=1777", "busybox", "sh", "-c",
        "dd if=/dev/zero of=/data/f bs=1M count=2 2>/dev/null && df -k /run | tail -1",
    )  # fmt: skip
    assert code == 0, err
    assert out.split()[1] == "1024"  # the tmpfs is 1 MiB
    code, out, _ = hpctl(engine, capsys, "volume", "ls")
    lines = out.splitlines()
    assert lines[0].split() == ["VOLUME", "NAME", "TENANT", "DRIVER", "SIZE", "USED", "CONTAINERS", "CREATED"]
    web = next(line for line in lines if line.startswith("web "))
    assert "acme" in web and "ext4-loop" in web and "16.8MB" in web and "2.1" in web
    code, out, _ = hpctl(engine, capsys, "volume", "ls", "--json", "--tenant", "acme")
    rows = json.loads(out)
    assert [r["name"] for r in rows] == ["web"] and rows[0]["used"] >= 2 * 1024 * 1024
    code, out, _ = hpctl(engine, capsys, "volume", "inspect", "web")
    info = json.loads(out)[0]
    assert info["tenant"] == "acme" and info["size"] == 16 * 1024 * 1024 and info["containers"] == []
    archive = tmp_path / "web.tar"
    assert hpctl(engine, capsys, "volume", "export", "web", str(archive))[0] == 0
    code, out, err = hpctl(
        engine, capsys, "volume", "import", "--tenant", "acme", "--size", "8m", "web2", str(archive)
    )
    assert code == 0, err
    code, out, _ = hpctl(
        engine, capsys, "run", "--rm", "--network", "none", "--tenant", "acme", "-v", "web2:/d:ro",
        "busybox", "ls", "-l", "/d/f",
    )  # fmt: skip
    assert code == 0 and "2097152" in out
    # another tenant: refused with a clear message
    code, _, err = hpctl(
        engine, capsys, "run", "--rm", "--network", "none", "-v", "web:/d", "busybox", "true"
    )
    assert code == 125 and "belongs to another tenant" in err
    # bad input: clear messages, nothing created
    for args, words in (
        (("volume", "create", "--size=-5m", "bad"), "invalid size"),
        (("volume", "create", "--size", "10q", "bad"), "invalid size"),
        (("volume", "create", "--size", "1m", "bad"), "at least 4m"),
        (("volume", "create", "a/b"), "invalid volume name"),
        (("run", "--rm", "--network", "none", "--tmpfs", "/run", "busybox", "true"), "needs a size"),
        (("run", "--rm", "--network", "none", "-v", "/no/such:/x", "busybox", "true"), "does not exist"),
        (("volume", "rm", "missing"), "no such volume"),
    ):
        code, _, err = hpctl(engine, capsys, *args)
        assert code != 0 and words in err, (args, err)
    assert sorted(v.name for v in engine.volume_list()) == ["plain", "web", "web2"]
    assert hpctl(engine, capsys, "volume", "rm", "web2")[0] == 0
    code, out, _ = hpctl(engine, capsys, "volume", "prune", "--tenant", "acme")
    assert out == "Deleted volume web\n"
    assert hpctl(engine, capsys, "volume", "prune")[1] == "Deleted volume plain\n"
    assert disk.loop_devices_backed_by(engine.paths.root, settle=2) == []
