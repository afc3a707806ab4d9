"""`hpctl`'s import budget and its lazy verb table (engine/cli/__init__.py).

The common read-only verbs must not load what only creating containers, networks, builds,
registries or the Docker API need: each costs a whole-process `hpctl` tens of milliseconds
(pyroute2 alone about 100). This is a test on what gets imported, never on time.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import VERB_MODULES, build_parser, verb_module
from tests.engine.cli_support import FakeDaemon, chunked, frame

REPO = Path(__file__).resolve().parents[3]

HEAVY = (
    "pyroute2",
    "engine.networks.manager",
    "engine.networks.netlink",
    "engine.networks.firewall",
    "engine.build",
    "engine.registry",
    "engine.dockerapi",
    "engine.images.archive",
    "engine.images.bootstrap",
    "engine.images.export",
    "engine.images.staging",
    "engine.cgroups.usage",
    "engine.cgroups.tenants",
    "engine.volumes.manager",
    "engine.runtime.attach",
    "engine.runtime.pty_exec",
    "engine.runtime.copy",
    "engine.cli.interactive",
    "http.client",
    "asyncio",
)
"""Modules (and their submodules) the verbs below must not import."""

PROBE = """
import json, sys
from engine.cli import main
code = main(sys.argv[1:])
sys.stdout.flush()
print("\\n" + json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def _imports_of(tmp_path: Path, *argv: str) -> tuple[int, set[str]]:
    """Run `hpctl --root <tmp> --instance ... ARGV` in a fresh interpreter; its exit code and sys.modules."""
    cmd = [sys.executable, "-c", PROBE, "--root", str(tmp_path / "root"), "--instance", "imports-unit", *argv]
    env = os.environ | {"PYTHONPATH": str(REPO), "HOSTPANEL_CLI_DAEMON": "0"}  # in-process, always
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=False)
    assert done.stdout.strip(), done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report["code"], set(report["modules"])


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(f"{h}.") for h in HEAVY))


@pytest.mark.parametrize(
    "argv",
    [("ps",), ("ps", "-a", "--json"), ("images",), ("inspect", "nosuch"), ("logs", "nosuch")],
    ids=lambda argv: " ".join(argv),
)
def test_common_verbs_import_nothing_heavy(tmp_path: Path, argv: tuple[str, ...]) -> None:
    code, modules = _imports_of(tmp_path, *argv)
    assert code == (125 if argv[0] in ("inspect", "logs") else 0)  # the unknown container: an EngineError
    assert "engine.engine" in modules  # the verb did reach the engine
    assert _heavy(modules) == []


def test_only_the_named_verbs_module_is_registered(tmp_path: Path) -> None:
    _, modules = _imports_of(tmp_path, "ps")
    registered = {m for m in modules if m.startswith("engine.cli.")}
    others = {f"engine.cli.{name}" for name, _ in VERB_MODULES} - {"engine.cli.containers"}
    assert registered & others <= {"engine.cli.output", "engine.cli.stats", "engine.cli.volumes"}


def test_the_network_manager_loads_pyroute2_only_to_touch_links() -> None:
    """`run --network none`, `rm` of such a container: the manager is made, netlink is not used."""
    code = "import sys, engine.networks.manager; print('pyroute2' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=os.environ | {"PYTHONPATH": str(REPO)},
    )
    assert done.stdout.strip() == "False", done.stderr


def test_a_run_still_loads_what_it_needs() -> None:
    """The lazy imports are real imports: creating a bridged container reaches pyroute2."""
    from engine.networks import netlink

    assert "def create_netns_with_veth" in Path(netlink.__file__).read_text()
    assert "lo" in netlink.links_with_prefix("lo")  # imports pyroute2 on the way
    assert "pyroute2" in sys.modules


def test_the_verb_table_matches_what_each_module_registers() -> None:
    seen: list[str] = []
    for name, verbs in VERB_MODULES:
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(f"engine.cli.{name}").register(sub)
        assert tuple(sub.choices) == verbs, name
        seen += verbs
    assert len(seen) == len(set(seen)), "a verb is claimed by two modules"


def test_every_verb_module_is_in_the_table() -> None:
    with_register = set()
    for path in (REPO / "engine" / "cli").glob("*.py"):
        tree = ast.parse(path.read_text())
        if any(isinstance(n, ast.FunctionDef) and n.name == "register" for n in tree.body):
            with_register.add(path.stem)
    assert with_register == {name for name, _ in VERB_MODULES}


@pytest.mark.parametrize(
    ("argv", "module"),
    [
        (["ps"], "containers"),
        (["--root", "/x", "--instance", "i", "run", "busybox"], "containers"),
        (["--root=/x", "images"], "images"),
        (["network", "ls"], "networks"),
        (["--instance=i", "version"], "events"),
        ([], None),
        (["-h"], None),
        (["--ro", "/x", "ps"], None),  # an abbreviated option: argparse decides, with every verb
        (["nosuch"], None),
    ],
)
def test_verb_module(argv: list[str], module: str | None) -> None:
    assert verb_module(argv) == module


def test_help_and_errors_still_list_every_verb(capsys: pytest.CaptureFixture[str]) -> None:
    from engine.cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out
    for _, verbs in VERB_MODULES:
        for verb in verbs:
            assert f"    {verb} " in listed, verb
    with pytest.raises(SystemExit) as exc:
        main(["nosuch"])
    assert exc.value.code == 2
    assert "invalid choice: 'nosuch' (choose from 'host', 'images'" in capsys.readouterr().err


def test_the_lean_parser_parses_like_the_full_one() -> None:
    argv = ["run", "--rm", "-e", "A=1", "--memory", "64m", "-p", "8080:80", "busybox", "true"]
    lean = build_parser(["containers"]).parse_args(argv)
    full = build_parser().parse_args(argv)
    assert {k: v for k, v in vars(lean).items()} == {k: v for k, v in vars(full).items()}


CLIENT_PROBE = """
import sys
from engine.cli import main
code = main(sys.argv[1:])
sys.stdout.flush()
modules = sorted(sys.modules)
import json
print("\\n" + json.dumps({"code": code, "modules": modules}))
"""

BASELINE_PROBE = "import sys; modules = sorted(sys.modules); import json; print(json.dumps(modules))"

CLIENT_MODULES = {"__future__", "_socket", "engine", "engine.cli", "engine.cli.remote"}
"""All a client of the operator daemon may import beyond what Python's own start loads."""


def test_a_client_of_the_daemon_imports_only_its_socket(tmp_path: Path) -> None:
    """Through the daemon, `hpctl ps` imports no engine module, nor socket's enum/selectors."""
    frames = frame(1, b"CONTAINER ID\n") + frame(2, b"a warning\n") + frame(3, b"exit 7")
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(frames[:5], frames[5:])
    sock = tmp_path / "daemon.sock"
    served = FakeDaemon(sock, answer)
    env = os.environ | {"PYTHONPATH": str(REPO), "HOSTPANEL_DOCKER_SOCKET": str(sock)}
    env.pop("HOSTPANEL_CLI_DAEMON", None)
    cmd = [
        sys.executable,
        "-c",
        CLIENT_PROBE,
        "--root",
        str(tmp_path / "root"),
        "--instance",
        "imports-unit",
        "ps",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=False)
    served.join(timeout=10)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert (report["code"], done.stdout.split("\n\n")[0], done.stderr) == (7, "CONTAINER ID", "a warning\n")
    baseline = subprocess.run(
        [sys.executable, "-c", BASELINE_PROBE], capture_output=True, text=True, env=env, cwd=REPO, check=True
    )
    assert set(report["modules"]) - set(json.loads(baseline.stdout)) == CLIENT_MODULES


def test_exec_through_the_daemon_imports_only_its_client(tmp_path: Path) -> None:
    """`hpctl exec C cmd` through a (fake) daemon: create, hijacked start, exit code; no json, no engine."""
    created = b'HTTP/1.1 201 Created\r\nContent-Length: 15\r\n\r\n{"Id": "ab12"}\n'
    started = (
        b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\n\r\n" + frame(1, b"o\0\xff") + frame(2, b"e\n")
    )
    inspected = b'HTTP/1.1 200 OK\r\nContent-Length: 34\r\n\r\n{"Running": false, "ExitCode": 9}\n'
    sock = tmp_path / "daemon.sock"
    served = FakeDaemon(sock, created, started, inspected)
    env = os.environ | {"PYTHONPATH": str(REPO), "HOSTPANEL_DOCKER_SOCKET": str(sock)}
    env.pop("HOSTPANEL_CLI_DAEMON", None)
    probe = CLIENT_PROBE.replace('print("\\n" + json.dumps(', 'sys.stderr.write("\\n" + json.dumps(')
    cmd = [sys.executable, "-c", probe, "--root", str(tmp_path / "root"), "exec", "c1", "sh", "-c", "x"]
    done = subprocess.run(cmd, capture_output=True, env=env, cwd=REPO, timeout=120, check=False)
    served.join(timeout=10)
    err, _, report = done.stderr.rpartition(b"\n")
    modules = set(json.loads(report)["modules"])
    assert (json.loads(report)["code"], done.stdout, err) == (9, b"o\0\xff", b"e\n")
    baseline = subprocess.run(
        [sys.executable, "-c", BASELINE_PROBE], capture_output=True, text=True, env=env, cwd=REPO, check=True
    )
    assert modules - set(json.loads(baseline.stdout)) == CLIENT_MODULES | {"engine.cli.remote_exec"}


@pytest.mark.parametrize(
    "argv",
    [
        ["exec", "c", "sh"],
        ["--root", "/r", "--instance=i", "exec", "-i", "c", "cat"],
        ["exec", "-e", "A=1", "--env=B=2", "-eC=3", "-u", "1", "--workdir", "/tmp", "c", "ls", "-l"],
        ["exec", "-it", "c", "sh"],
        ["exec", "c", "-e", "A=1", "sh"],  # after the container: the command's
        ["exec", "-w=/x", "-e=A=1", "c", "pwd"],
    ],
)
def test_the_exec_client_reads_the_line_as_argparse(argv: list[str]) -> None:
    from engine.cli.remote_exec import parse_exec_line

    line = parse_exec_line(argv)
    args = build_parser(["containers"]).parse_args(argv)
    assert line is not None
    assert (line.container, line.cmd, line.env, line.interactive, line.tty) == (
        args.container,
        args.cmd,
        args.env,
        args.interactive,
        args.tty,
    )
    assert (line.user or None, line.workdir or None) == (args.user, args.workdir)
    assert (line.root or None, line.instance or None) == (args.root and str(args.root), args.instance)


@pytest.mark.parametrize(
    "argv",
    [
        ["exec", "c"],
        ["exec", "c", "--", "sh"],
        ["exec", "--inter", "c", "sh"],
        ["exec", "-ie", "A=1", "c", "sh"],
        ["exec", "-h"],
        ["--ro", "/r", "exec", "c", "sh"],
        ["exec", "-e"],
    ],
)
def test_what_the_exec_client_does_not_read_plainly_is_argparse_s(argv: list[str]) -> None:
    from engine.cli.remote_exec import parse_exec_line

    assert parse_exec_line(argv) is None


LAUNCHER = REPO / "scripts" / "hpctl-py"


def _imported(stderr: str) -> set[str]:
    """The modules ``python -X importtime`` reported importing."""
    return {
        line.rpartition("|")[2].strip() for line in stderr.splitlines() if line.startswith("import time:")
    } - {"package"}


def test_the_installed_python_hpctl_is_our_launcher() -> None:
    """`make install` puts scripts/hpctl-py (not pip's console-script wrapper, which imports `re`)
    beside the venv's python, its shebang pointed at that python."""
    installed = Path(sys.executable).with_name("hpctl-py")
    first, _, rest = installed.read_text().partition("\n")
    assert first.startswith("#!") and "python" in first
    assert rest == LAUNCHER.read_text().partition("\n")[2]


def test_the_launcher_through_the_daemon_imports_only_the_client(tmp_path: Path) -> None:
    """The whole command as a user runs it: Python's start, the launcher, the client; nothing else
    (pip's wrapper added `re`, about 11 ms of every call)."""
    frames = frame(1, b"ID\n") + frame(3, b"exit 0")
    answer = f"HTTP/1.1 200 OK\r\nContent-Length: {len(frames)}\r\n\r\n".encode() + frames
    sock = tmp_path / "daemon.sock"
    served = FakeDaemon(sock, answer)
    env = os.environ | {"PYTHONPATH": str(REPO), "HOSTPANEL_DOCKER_SOCKET": str(sock)}
    env.pop("HOSTPANEL_CLI_DAEMON", None)
    cmd = [sys.executable, "-X", "importtime", str(LAUNCHER), "--root", str(tmp_path / "root"), "ps"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=120, check=False)
    served.join(timeout=10)
    assert (done.returncode, done.stdout) == (0, "ID\n"), done.stderr[-500:]
    baseline = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "pass"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert _imported(done.stderr) - _imported(baseline.stderr) == CLIENT_MODULES
