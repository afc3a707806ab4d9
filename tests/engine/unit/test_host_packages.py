"""The one apt package list and the commands that install what is missing."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from engine.host import packages


def test_required_packages_cover_the_runtime() -> None:
    names = packages.required_packages()
    for pkg in (
        "crun",
        "conmon",
        "busybox-static",
        "catatonit",
        "tini",
        "nftables",
        "redis-server",
        "postgresql",
    ):
        assert pkg in names
    assert len(set(names)) == len(names)


def test_missing_packages_uses_the_query() -> None:
    def query(names: Sequence[str]) -> set[str]:
        return {n for n in names if n != "tini"}

    assert packages.missing_packages(["crun", "tini"], query=query) == ["tini"]


def test_apt_commands_update_before_install() -> None:
    assert packages.apt_commands(["crun", "tini"]) == [
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "crun", "tini"],
    ]


def test_nothing_missing_means_apt_never_runs() -> None:
    assert packages.apt_commands([]) == []
    calls: list[Sequence[str]] = []
    assert packages.install_packages([], run=calls.append) == []
    assert calls == []


def test_non_root_cannot_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(packages.os, "geteuid", lambda: 1000)
    with pytest.raises(packages.HostNotReady, match="run as root"):
        packages.install_packages(["crun"], run=lambda cmd: None)


def test_plan_cli_prints_apt_commands(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(packages, "installed_packages", lambda names: {n for n in names if n != "crun"})
    assert packages.main(["--plan"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["apt-get update", "apt-get install -y --no-install-recommends crun"]


def test_installed_packages_reads_dpkg() -> None:
    # On any Debian host dpkg itself is installed; elsewhere nothing is.
    got = packages.installed_packages(["dpkg", "surely-not-a-package-hostpanel"])
    assert "surely-not-a-package-hostpanel" not in got


def test_the_docker_clients_are_listed_and_no_daemon_starts_while_apt_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    names = packages.required_packages()
    assert "docker.io" in names and "docker-compose" in names  # clients the Docker API tests drive
    policy = tmp_path / "policy-rc.d"
    monkeypatch.setattr(packages, "_POLICY_RC", policy)
    monkeypatch.setattr(packages.os, "geteuid", lambda: 0)
    seen: list[str] = []

    def run(cmd: Sequence[str]) -> None:
        # while apt runs, invoke-rc.d asks policy-rc.d, which denies every start (exit 101)
        seen.append(" ".join(cmd))
        result = subprocess.run([str(policy), "docker", "start"], check=False)
        assert result.returncode == 101

    assert packages.install_packages(["docker-compose"], run=run) == ["docker-compose"]
    assert seen[-1].endswith("install -y --no-install-recommends docker-compose")
    assert not policy.exists()  # ours is removed afterwards; a host's own would be kept


def test_a_hosts_own_policy_rc_is_kept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    policy = tmp_path / "policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    monkeypatch.setattr(packages, "_POLICY_RC", policy)
    monkeypatch.setattr(packages.os, "geteuid", lambda: 0)
    packages.install_packages(["docker-compose"], run=lambda cmd: None)
    assert policy.read_text() == "#!/bin/sh\nexit 101\n"
