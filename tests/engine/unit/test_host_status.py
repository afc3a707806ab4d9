"""Read-only host reports and the `hpctl host` commands, without root."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest

from engine.cli import CliContext
from engine.cli import host as host_cli
from engine.host.status import engine_root_status, host_info
from engine.paths import EnginePaths


def test_engine_root_status_never_creates(tmp_path: Path) -> None:
    status = engine_root_status(tmp_path / "root")
    assert status.ready is False
    assert "containers" in status.missing and "blobs/sha256" in status.missing
    assert not (tmp_path / "root").exists()
    EnginePaths(tmp_path / "root").ensure()
    assert engine_root_status(tmp_path / "root").to_dict() == {
        "root": str(tmp_path / "root"),
        "ready": True,
        "missing": [],
    }


def test_host_info_has_the_essentials(tmp_path: Path) -> None:
    info = host_info(tmp_path, "inst1")
    assert info["kernel"]
    assert info["engine"] == {
        "root": str(tmp_path),
        "ready": False,
        "missing": info["engine"]["missing"],
        "instance": "inst1",
    }
    assert set(info) >= {"cgroup", "crun", "conmon", "init", "ip_forward"}


def run_cli(argv: list[str], root: Path) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="hpctl")
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--instance", default=None)
    sub = parser.add_subparsers(dest="command", required=True)
    host_cli.register(sub)
    args = parser.parse_args(argv)
    ctx = CliContext(root=args.root or root, instance=args.instance or "hostpanel")
    ctx.out = io.StringIO()
    code = args.handler(ctx, args)
    return code, ctx.out.getvalue()


def test_root_is_accepted_after_the_command(tmp_path: Path) -> None:
    code, out = run_cli(["host", "info", "--root", str(tmp_path / "x"), "--json"], tmp_path)
    assert code == 0
    assert json.loads(out)["engine"]["root"] == str(tmp_path / "x")


def test_root_before_the_command_is_kept(tmp_path: Path) -> None:
    _code, out = run_cli(["--root", str(tmp_path / "y"), "host", "info", "--json"], tmp_path)
    assert json.loads(out)["engine"]["root"] == str(tmp_path / "y")


def test_info_text(tmp_path: Path) -> None:
    code, out = run_cli(["host", "info"], tmp_path)
    assert code == 0
    assert "cgroups:" in out and "engine root:" in out and "not set up" in out


def test_setup_dry_run_changes_nothing(tmp_path: Path) -> None:
    code, out = run_cli(["host", "setup", "--root", str(tmp_path / "e"), "--dry-run"], tmp_path)
    assert code == 0
    assert "would change:" in out and f"create the engine root {tmp_path / 'e'}" in out
    assert not (tmp_path / "e").exists()


def test_bad_instance_is_refused(tmp_path: Path) -> None:
    from engine.errors import InvalidSpec

    with pytest.raises(InvalidSpec):
        run_cli(["host", "info", "--instance", "Bad Name"], tmp_path)
