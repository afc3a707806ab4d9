"""`hpctl compose` refusals that need no engine: a bad file is refused before anything is touched."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cli import main


def test_bad_file_refused_before_the_engine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    compose = tmp_path / "compose.yaml"
    compose.write_text("services:\n  web:\n    image: busybox\n    privileged: true\n    pid: host\n")
    root = tmp_path / "root"
    code = main(["--root", str(root), "compose", "-f", str(compose), "up", "-d"])
    err = capsys.readouterr().err
    assert code == 125
    assert "line 4: services.web.privileged" in err and "line 5: services.web.pid" in err
    assert not root.exists()  # the engine was never opened


def test_no_compose_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["--root", str(tmp_path / "root"), "compose", "up", "-d"]) == 125
    assert "no compose file here" in capsys.readouterr().err


def test_bad_project_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--root", str(tmp_path / "root"), "compose", "-p", "!!!", "ps"]) == 125
    assert "invalid project name" in capsys.readouterr().err
    assert not (tmp_path / "root").exists()
