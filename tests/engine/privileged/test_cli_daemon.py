"""`hpctl` as a thin client of the operator daemon (engine/cli/remote.py, engine/dockerapi/cli.py).

Real containers, a real daemon (the operator router on a tmp socket) and `hpctl` as whole
processes, each test twice: the Python client, and the C client `make install` installs
(engine/cli/hpctl.c, handing what the daemon does not run to the Python side): the quick verbs
sent to the daemon print and exit exactly as they do in-process;
everything else, another engine root, no daemon, or HOSTPANEL_CLI_DAEMON=0 runs in-process;
the endpoint refuses what it must not run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.cli.remote import CONTENT_TYPE, CONTROL, ENDPOINT, STDERR, frames
from engine.cli.remote_exec import INSTANCE_HEADER, ROOT_HEADER
from engine.engine import Engine
from engine.images.model import Image
from tests.engine.cli_support import build_c_client, signal_and_wait
from tests.engine.conftest import hpctl_argv
from tests.engine.dockerapi_support import DockerAPI, _UnixConnection, serving_api

REPO = Path(__file__).resolve().parents[3]

PROBE = """
import json, sys
from engine.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:  # argparse's help and errors, in-process
    code = exc.code
sys.stdout.flush()
sys.stderr.write("\\n" + json.dumps({"code": code, "in_process": "engine.engine" in sys.modules}))
"""


_client: dict[str, Path | None] = {"probe": None, "real": None}
"""The C client the current test runs `hpctl` as, its Python side the PROBE (``probe``) or the
Python hpctl itself (``real``); None: the Python client (``python -c PROBE``, ``-m engine.cli``)."""


@pytest.fixture(scope="module")
def c_clients(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """engine/cli/hpctl.c built as `make install` builds it, twice: its Python side the PROBE, and
    scripts/hpctl-py (what make install points it at)."""
    directory = tmp_path_factory.mktemp("c-client")
    probe = directory / "probe.py"
    probe.write_text(PROBE)
    (directory / "real").mkdir()
    return {
        "probe": build_c_client(directory, sys.executable, probe),
        "real": build_c_client(directory / "real", sys.executable, REPO / "scripts" / "hpctl-py"),
    }


@pytest.fixture(params=["python", "c"])
def api(
    request: pytest.FixtureRequest, engine: Engine, busybox: Image, c_clients: dict[str, Path]
) -> Iterator[DockerAPI]:
    if request.param == "c":
        _client.update(c_clients)
    try:
        with serving_api(engine) as served:
            yield served
    finally:
        _client.update(probe=None, real=None)


def client_argv(engine: Engine, *args: str) -> list[str]:
    """The command line of the current test's `hpctl` on ``engine``, then ``args``."""
    argv = hpctl_argv(engine, *args)
    return argv if _client["real"] is None else [str(_client["real"]), *argv[3:]]


def hpctl(
    api: DockerAPI,
    *args: str,
    daemon: bool = True,
    root: Path | None = None,
    cwd_gone: Path | None = None,
    cwd: Path = REPO,
) -> tuple[int, str, str, bool]:
    """`hpctl ARGS` as a whole process: exit code, stdout, stderr, and whether it ran in-process.

    ``cwd_gone``: run it in that directory, removed before hpctl starts.
    """
    code, out, err, in_process = hpctl_bytes(api, *args, daemon=daemon, root=root, cwd_gone=cwd_gone, cwd=cwd)
    return code, out.decode(), err.decode(), in_process


def hpctl_bytes(
    api: DockerAPI,
    *args: str,
    daemon: bool = True,
    root: Path | None = None,
    cwd_gone: Path | None = None,
    cwd: Path = REPO,
    stdin: bytes | None = None,
) -> tuple[int, bytes, bytes, bool]:
    """:func:`hpctl` with its output as bytes, and ``stdin`` as its input (else /dev/null)."""
    argv = hpctl_argv(api.engine, *args)
    if root is not None:
        argv[argv.index("--root") + 1] = str(root)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOSTPANEL_", "DOCKER_"))}
    env |= {"PYTHONPATH": str(REPO), "HOSTPANEL_DOCKER_SOCKET": str(api.socket)}
    if not daemon:
        env["HOSTPANEL_CLI_DAEMON"] = "0"
    c_client = _client["probe"]
    command = [sys.executable, "-c", PROBE, *argv[3:]] if c_client is None else [str(c_client), *argv[3:]]
    if cwd_gone is not None:
        cwd_gone.mkdir()
        command = ["sh", "-c", f'cd "{cwd_gone}" && rmdir "{cwd_gone}" && exec "$@"', "sh", *command]
    done = subprocess.run(
        command,
        capture_output=True,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        env=env,
        cwd=cwd,
        timeout=300,
    )
    err, _, report = done.stderr.rpartition(b"\n")
    if c_client is not None and not report.startswith(b'{"code"'):  # the C client answered itself
        return done.returncode, done.stdout, done.stderr, False
    probe = json.loads(report)
    return probe["code"], done.stdout, err, probe["in_process"]


RUN_RM = ("run", "--rm", "--network", "none")


def _running(api: DockerAPI, *cmd: str) -> str:
    code, out, err, _ = hpctl(api, "run", "-d", "--network", "none", "busybox", *cmd)
    assert code == 0, err
    return out.strip()


def _timeless(table: str) -> list[list[str]]:
    """A `ps`/`images` table without its relative-time columns ("3 seconds ago" moves on)."""
    return [
        [c for c in re.split(r"  +", line) if "ago" not in c and not c.startswith("Up ")]
        for line in table.splitlines()
    ]


def test_quick_verbs_answer_through_the_daemon_as_in_process(api: DockerAPI) -> None:
    cid = _running(api, "sleep", "600")
    printer = _running(api, "sh", "-c", "echo out; echo err >&2")
    api.engine.wait(printer)
    for args in (
        ("ps", "-aq"),
        ("ps", "-a", "--json"),
        ("images", "--json"),
        ("images", "-q"),
        ("inspect", cid),
        ("logs", "-t", printer),
        ("ps",),
        ("images",),
    ):
        remote = hpctl(api, *args)
        local = hpctl(api, *args, daemon=False)
        assert remote[3] is False and local[3] is True, args  # where each ran
        assert (remote[0], remote[2]) == (local[0], local[2]), args
        if "--json" in args or "-q" in args[1:] or "-aq" in args or args[0] in ("inspect", "logs"):
            assert remote[1] == local[1], args
        else:
            assert _timeless(remote[1]) == _timeless(local[1]), args
    assert cid[:12] in hpctl(api, "ps")[1]
    assert hpctl(api, "logs", printer)[1:3] == ("out\n", "err\n")


def test_errors_and_exit_codes_are_the_in_process_ones(api: DockerAPI) -> None:
    for args in (
        ("inspect", "nosuch"),
        ("logs", "nosuch"),
        ("stop", "nosuch", "nosuch2"),
        ("ps", "--bogus"),
        ("rm",),
    ):
        remote = hpctl(api, *args)
        local = hpctl(api, *args, daemon=False)
        assert remote[:3] == local[:3], args
        assert remote[0] != 0
    assert hpctl(api, "inspect", "nosuch")[:3] == (
        125,
        "",
        "hpctl: no such container: nosuch (see `hpctl ps -a`)\n",
    )
    code, out, _, in_process = hpctl(api, "ps", "--help")
    assert (code, in_process) == (0, False) and out.startswith("usage: hpctl ps [-h]")


def test_stop_and_rm_through_the_daemon(api: DockerAPI) -> None:
    cid = _running(api, "sleep", "600")
    assert hpctl(api, "stop", "-t", "0", cid)[:2] == (0, f"{cid}\n")
    assert api.engine.get(cid).status == "exited"
    assert hpctl(api, "rm", cid)[:2] == (0, f"{cid}\n")
    assert api.engine.list(all=True) == []


def test_what_the_daemon_does_not_run_runs_in_process(api: DockerAPI, tmp_path: Path) -> None:
    cid = _running(api, "sh", "-c", "echo once")
    api.engine.wait(cid)
    assert hpctl(api, "logs", "-f", cid)[:4] == (0, "once\n", "", False)  # follows through the daemon
    assert hpctl(api, "wait", cid)[3] is True  # not a verb the daemon runs
    secret = tmp_path / "token"
    secret.write_text("s3cret")
    code, out, _, in_process = hpctl(
        api, *RUN_RM, "--secret", f"token={secret}", "busybox", "cat", "/run/secrets/token"
    )
    assert (code, out, in_process) == (0, "s3cret\n", True)  # the caller's file: read here
    os.environ["HPTEST_FROM_CALLER"] = "mine"
    try:
        code, out, _, in_process = hpctl(
            api, *RUN_RM, "-e", "HPTEST_FROM_CALLER", "busybox", "sh", "-c", "echo $HPTEST_FROM_CALLER"
        )
    finally:
        del os.environ["HPTEST_FROM_CALLER"]
    assert (code, out, in_process) == (0, "mine\n", True)  # the caller's environment: here too
    other = tmp_path / "other-root"
    code, out, _, in_process = hpctl(api, "ps", "-aq", root=other)  # another engine: its own answer
    assert (code, out, in_process) == (0, "", True)
    assert hpctl(api, "ps", "-aq")[1].strip() == cid[:12]


def test_run_through_the_daemon_as_in_process(api: DockerAPI) -> None:
    script = "echo to-out; echo to-err >&2; exit 3"
    remote = hpctl(api, *RUN_RM, "busybox", "sh", "-c", script)
    local = hpctl(api, *RUN_RM, "busybox", "sh", "-c", script, daemon=False)
    assert remote == (3, "to-out\n", "to-err\n", False)
    assert local == (3, "to-out\n", "to-err\n", True)
    assert api.engine.list(all=True) == []  # --rm removed both
    code, out, _, in_process = hpctl(
        api, "run", "-d", "--network", "none", "-e", "A=1", "busybox", "sleep", "600"
    )
    assert (code, in_process) == (0, False)
    assert api.engine.get(out.strip()).status == "running"
    assert hpctl(api, *RUN_RM, "nosuch-image")[:3] == hpctl(api, *RUN_RM, "nosuch-image", daemon=False)[:3]


def test_a_cached_build_through_the_daemon_as_in_process(api: DockerAPI, tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM busybox\nRUN echo built > /built.txt\n")
    (context / "Other.dockerfile").write_text("FROM busybox\nRUN echo other > /other.txt\n")
    first = hpctl(api, "build", "-t", "site:1", "ctx", daemon=False, cwd=tmp_path)  # relative: the caller's
    assert first[0] == 0 and first[3] is True, first
    remote = hpctl(api, "build", "-t", "site:1", "ctx", cwd=tmp_path)
    local = hpctl(api, "build", "-t", "site:1", "ctx", daemon=False, cwd=tmp_path)
    assert (remote[3], local[3]) == (False, True)

    def idless(text: str) -> str:  # each commit is a new image (its creation time), cached steps or not
        return re.sub(r"\b[0-9a-f]{12}\b", "<id>", text)

    assert (remote[0], idless(remote[1]), remote[2]) == (local[0], idless(local[1]), local[2])
    assert "Using cache" in remote[1] and "(2 steps, 1 cached, 0 RUN executed)" in remote[1]
    code, out, _, in_process = hpctl(
        api, "build", "-t", "other:1", "-f", "ctx/Other.dockerfile", "ctx", cwd=tmp_path
    )
    assert (code, in_process) == (0, False) and "0 cached" in out
    assert (
        hpctl(api, "build", "-t", "x:1", "nosuch", cwd=tmp_path)[:3]
        == hpctl(api, "build", "-t", "x:1", "nosuch", daemon=False, cwd=tmp_path)[:3]
    )


def test_a_foreground_run_passes_signals_on_through_the_daemon(api: DockerAPI) -> None:
    argv = client_argv(api.engine, *RUN_RM, "busybox", "sh", "-c")
    script = "trap 'echo caught; exit 7' INT; echo ready; while true; do sleep 0.1; done"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOSTPANEL_", "DOCKER_"))}
    env |= {"PYTHONPATH": str(REPO), "HOSTPANEL_DOCKER_SOCKET": str(api.socket)}
    proc = subprocess.Popen(
        [*argv, script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    ready = proc.stdout.readline()
    out, _ = signal_and_wait(proc, signal.SIGINT)
    assert ready == "ready\n"
    assert (proc.returncode, out) == (7, "caught\n")
    assert api.engine.list(all=True) == []


def test_a_caller_whose_working_directory_is_gone_runs_in_process(api: DockerAPI, tmp_path: Path) -> None:
    code, out, _, in_process = hpctl(api, "ps", "-aq", cwd_gone=tmp_path / "gone")
    assert (code, out, in_process) == (0, "", True)


def test_without_a_daemon_every_verb_runs_in_process(api: DockerAPI, tmp_path: Path) -> None:
    gone = DockerAPI(tmp_path / "no.sock", api.engine, api.config)
    (tmp_path / "no.sock").touch()  # a stale socket file: nobody listens
    code, out, _, in_process = hpctl(gone, "ps")
    assert (code, in_process) == (0, True) and out.startswith("CONTAINER ID")


def _post(api: DockerAPI, body: bytes, content_type: str = CONTENT_TYPE) -> tuple[int, bytes]:
    conn = _UnixConnection(str(api.socket), timeout=60)
    try:
        conn.request("POST", ENDPOINT, body=body, headers={"Content-Type": content_type})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _command(*fields: str) -> bytes:
    return b"\0".join(f.encode() for f in fields)


def test_the_endpoint_refuses_what_it_must_not_run(api: DockerAPI, tmp_path: Path) -> None:
    root = ["--root", str(api.engine.paths.root), "--instance", api.engine.instance]
    for argv in (
        ["run", "-it", "busybox", "sh"],
        ["run", "--secret", "a=/etc/shadow", "busybox", "true"],
        ["run", "-e", "HOME", "busybox", "true"],
        ["exec", "x", "sh"],
        ["cp", "x:/etc", "/"],
        [],
    ):
        status, answer = _post(api, _command("/", "", *root, *argv))
        assert status == 409, (argv, answer)
    status, answer = _post(api, _command("/", "", "--root", str(tmp_path), "ps"))
    assert status == 409 and b"another engine root" in answer
    status, answer = _post(api, _command("/", "", "--instance", "other", "--root", root[1], "ps"))
    assert status == 409
    status, answer = _post(api, _command("/", "HOSTPANEL_ROOT=/elsewhere", "", "ps"))
    assert status == 409  # HOSTPANEL_ROOT of the caller names another root
    for body, content_type in (
        (_command("/", "", *root, "ps"), "application/json"),
        (_command("relative", "", *root, "ps"), CONTENT_TYPE),
        (_command("/", "PATH=/tmp", "", *root, "ps"), CONTENT_TYPE),
        (b"/\0\xff\0\0ps", CONTENT_TYPE),  # not HOSTPANEL_* either
    ):
        status, answer = _post(api, body, content_type)
        assert status == 400, (body, answer)
    status, answer = _post(api, _command("/", "", *root, "ps", "-q"))
    assert (status, list(frames([answer]))) == (200, [(CONTROL, b"exit 0")])  # nothing printed, exit 0
    status, answer = _post(api, _command("/", "", *root, "inspect", "nosuch"))
    assert (status, list(frames([answer]))) == (
        200,
        [(STDERR, b"hpctl: no such container: nosuch (see `hpctl ps -a`)\n"), (CONTROL, b"exit 125")],
    )


# ---- exec through the Docker API's exec endpoints (engine/cli/remote_exec.py) -------------------


def test_exec_through_the_daemon_as_in_process(api: DockerAPI) -> None:
    """Bytes exact (NUL, non-UTF-8), stderr apart, the exit code: through the daemon and in-process."""
    cid = _running(api, "sleep", "600")
    script = r"printf 'a\000b\377c'; printf 'to-err\377' >&2; exit 5"
    remote = hpctl_bytes(api, "exec", cid, "sh", "-c", script)
    local = hpctl_bytes(api, "exec", cid, "sh", "-c", script, daemon=False)
    assert remote == (5, b"a\0b\xffc", b"to-err\xff", False)
    assert local == (5, b"a\0b\xffc", b"to-err\xff", True)
    assert hpctl(api, "exec", cid, "true")[:4] == (0, "", "", False)
    os.environ["HPTEST_FROM_CALLER"] = "mine"
    try:
        args = ("exec", "-e", "A=1", "--env=B=2", "-e", "HPTEST_FROM_CALLER", "-e", "HPTEST_UNSET")
        args += ("-w", "/tmp", "-u", "65534", cid, "sh", "-c", 'echo "$A $B $HPTEST_FROM_CALLER"; pwd; id -u')
        remote_env, local_env = hpctl(api, *args), hpctl(api, *args, daemon=False)
    finally:
        del os.environ["HPTEST_FROM_CALLER"]
    assert remote_env == (0, "1 2 mine\n/tmp\n65534\n", "", False)
    assert local_env[:3] == remote_env[:3]
    name = api.engine.get(cid).name
    assert hpctl(api, "exec", name, "echo", "by", "name")[:4] == (0, "by name\n", "", False)


def test_exec_streams_large_output_exactly(api: DockerAPI) -> None:
    cid = _running(api, "sleep", "600")
    assert hpctl(api, "exec", cid, "sh", "-c", "head -c 3145728 /dev/urandom > /tmp/big")[0] == 0
    remote = hpctl_bytes(api, "exec", cid, "sh", "-c", "cat /tmp/big; echo done >&2")
    local = hpctl_bytes(api, "exec", cid, "sh", "-c", "cat /tmp/big; echo done >&2", daemon=False)
    assert (remote[0], remote[2], remote[3], local[3]) == (0, b"done\n", False, True)
    assert len(remote[1]) == 3 * 1024 * 1024
    assert remote[1] == local[1]


def test_exec_output_to_a_reader_that_leaves(api: DockerAPI) -> None:
    """`hpctl exec C yes | head -c 10`: hpctl ends quietly (141, as a shell says of SIGPIPE)."""
    cid = _running(api, "sleep", "600")
    argv = client_argv(api.engine, "exec", cid, "sh", "-c", "yes | head -c 50000000")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOSTPANEL_", "DOCKER_"))}
    env |= {"PYTHONPATH": str(REPO), "HOSTPANEL_DOCKER_SOCKET": str(api.socket)}
    script = '"$@" 2>"$ERR" | head -c 10; echo " ${PIPESTATUS[0]}"'
    done = subprocess.run(
        ["bash", "-c", script, "bash", *argv],
        capture_output=True,
        text=True,
        env=env | {"ERR": str(api.socket.parent / "exec.err")},
        timeout=300,
        check=True,
    )
    assert done.stdout == "y\ny\ny\ny\ny\n 141\n"
    assert (api.socket.parent / "exec.err").read_text() == ""


def test_exec_stdin_through_the_daemon(api: DockerAPI) -> None:
    cid = _running(api, "sleep", "600")
    data = bytes(range(256)) * 1024 + b"end"
    remote = hpctl_bytes(api, "exec", "-i", cid, "sh", "-c", "cat; exit 3", stdin=data)
    local = hpctl_bytes(api, "exec", "-i", cid, "sh", "-c", "cat; exit 3", stdin=data, daemon=False)
    assert remote == (3, data, b"", False)
    assert local == (3, data, b"", True)
    # without -i the exec's stdin is empty, whatever hpctl's is
    assert hpctl_bytes(api, "exec", cid, "cat", stdin=b"not read")[:4] == (0, b"", b"", False)


def test_exec_errors_are_the_in_process_ones(api: DockerAPI, tmp_path: Path) -> None:
    """Nothing ran when the daemon refuses: hpctl runs the exec itself, with its own words."""
    stopped = _running(api, "true")
    api.engine.wait(stopped)
    running = _running(api, "sleep", "600")
    for args in (
        ("exec", "nosuch", "true"),
        ("exec", stopped, "true"),
        ("exec", running),  # no command
        ("exec", running, "/nosuch-binary"),
    ):
        remote = hpctl(api, *args)
        local = hpctl(api, *args, daemon=False)
        assert remote[:3] == local[:3], args
        assert remote[0] != 0, args
    assert hpctl(api, "exec", "nosuch", "true") == (
        125,
        "",
        "hpctl: no such container: nosuch (see `hpctl ps -a`)\n",
        True,
    )
    # another engine root: the daemon refuses (409), hpctl looks in its own root and finds nothing
    code, _, err, in_process = hpctl(api, "exec", running, "true", root=tmp_path / "other-root")
    assert (code, in_process) == (125, True) and "no such container" in err
    # a terminal stays in-process, whatever comes of it there
    assert hpctl(api, "exec", "-t", running, "echo", "hi")[3] is True
    it = ("exec", "-it", running, "echo", "hi")  # no terminal here: the in-process refusal
    assert hpctl(api, *it)[:3] == hpctl(api, *it, daemon=False)[:3]


def test_exec_without_a_daemon_runs_in_process(api: DockerAPI, tmp_path: Path) -> None:
    cid = _running(api, "sleep", "600")
    gone = DockerAPI(tmp_path / "no.sock", api.engine, api.config)
    (tmp_path / "no.sock").touch()  # a stale socket file: nobody listens
    assert hpctl(gone, "exec", cid, "sh", "-c", "echo out; exit 4") == (4, "out\n", "", True)


def test_exec_create_refuses_another_engine(api: DockerAPI) -> None:
    """A create naming another root or instance: 409; Docker clients (no such headers) are not concerned."""
    cid = _running(api, "sleep", "600")
    root = str(api.engine.paths.root)
    body = json.dumps({"Cmd": ["true"]})
    for headers, status in (
        ({}, 201),
        ({ROOT_HEADER: root, INSTANCE_HEADER: api.engine.instance}, 201),
        ({ROOT_HEADER: root + "/elsewhere", INSTANCE_HEADER: api.engine.instance}, 409),
        ({ROOT_HEADER: root, INSTANCE_HEADER: "other"}, 409),
        ({ROOT_HEADER: root, INSTANCE_HEADER: ""}, 409),  # the default instance: not this test's
        ({ROOT_HEADER: "relative", INSTANCE_HEADER: api.engine.instance}, 400),
    ):
        conn = _UnixConnection(str(api.socket), timeout=60)
        try:
            conn.request(
                "POST",
                f"/containers/{cid}/exec",
                body=body,
                headers={"Content-Type": "application/json", **headers},
            )
            response = conn.getresponse()
            assert response.status == status, (headers, response.read())
        finally:
            conn.close()
