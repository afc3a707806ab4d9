"""The stock docker CLI, on a real terminal, against the operator's API: run -it, exec -it, attach, cp.

Each test serves the API on a temporary socket and gives the CLI its own DOCKER_CONFIG. The
interactive verbs run with a pseudo-terminal as their stdin/stdout (the CLI refuses -t without
one), driven as a user would type.
"""

from __future__ import annotations

import io
import os
import secrets
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.dockerapi.daemon import operator_router
from engine.dockerapi.http import UnixServer, serve_in_thread
from engine.engine import Engine
from engine.images.model import Image
from engine.runtime.model import ContainerSpec, ExecSpec
from tests.engine.terminal import Terminal, set_size

DOCKER = "/usr/local/bin/docker"


@pytest.fixture()
def docker_env(engine: Engine, busybox: Image, tmp_path: Path) -> Iterator[dict[str, str]]:
    socket_path = tmp_path / "docker.sock"
    server = UnixServer(socket_path, operator_router(engine))
    serve_in_thread(server)
    config = tmp_path / "docker-config"
    config.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DOCKER_HOST": f"unix://{socket_path}",
        "DOCKER_CONFIG": str(config),
        "TERM": "xterm",
        "HOME": str(tmp_path),
    }
    try:
        yield env
    finally:
        server.shutdown()
        server.server_close()


def docker(env: dict[str, str], *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([DOCKER, *args], env=env, input=input, capture_output=True, timeout=60, check=False)


def test_run_it_shell_round_trip_and_exit_code(engine: Engine, docker_env: dict[str, str]) -> None:
    name = f"it-{secrets.token_hex(3)}"
    term = Terminal([DOCKER, "run", "-it", "--name", name, "busybox", "sh"], docker_env)
    term.read_until(b"# ")
    term.type(b"echo hi-$((6*7)); tty; stty size\r")
    out = term.read_until(b"24 80")
    assert b"hi-42" in out and b"/dev/pts/0" in out  # a real terminal, at the client's size
    term.type(b"exit 3\r")
    assert term.wait() == 3
    assert engine.get(name).exit_code == 3
    logs = docker(docker_env, "logs", name)
    assert b"hi-42" in logs.stdout


def test_run_i_without_tty_pipes_stdin(docker_env: dict[str, str]) -> None:
    result = docker(
        docker_env, "run", "-i", "--rm", "busybox", "sh", "-c", "tr a-z A-Z; echo err >&2", input=b"piped\n"
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, b"PIPED\n", b"err\n")


def test_exec_it_and_resize(engine: Engine, docker_env: dict[str, str]) -> None:
    container = engine.run(ContainerSpec(image="busybox", command=("sleep", "3600")))
    term = Terminal([DOCKER, "exec", "-it", container.id, "sh"], docker_env)
    term.read_until(b"# ")
    term.type(b"echo exec-$((2+3)); stty size\r")
    term.read_until(b"24 80")
    set_size(term.master, 30, 100)  # the CLI gets SIGWINCH
    time.sleep(0.5)  # the CLI forwards the new size through /exec/{id}/resize
    term.type(b"stty size\r")
    term.read_until(b"30 100")
    term.type(b"exit 5\r")
    assert term.wait() == 5
    assert engine.get(container.id).status == "running"  # the exec ended, not the container


def test_attach_and_detach_keep_the_container_running(engine: Engine, docker_env: dict[str, str]) -> None:
    name = f"att-{secrets.token_hex(3)}"
    started = docker(docker_env, "run", "-dit", "--name", name, "busybox", "sh")
    assert started.returncode == 0, started.stderr
    term = Terminal([DOCKER, "attach", name], docker_env)
    time.sleep(0.5)
    term.type(b"echo attached-$((3*3))\r")
    term.read_until(b"attached-9")
    term.type(b"\x10\x11")  # ctrl-p ctrl-q: detach
    term.wait()
    assert engine.get(name).status == "running"
    term = Terminal([DOCKER, "attach", name], docker_env)
    time.sleep(0.5)
    term.type(b"echo again\r")
    term.read_until(b"again")
    term.type(b"exit 0\r")
    assert term.wait() == 0
    assert engine.wait(name, timeout=20).exit_code == 0


def test_cp_both_ways(engine: Engine, docker_env: dict[str, str], tmp_path: Path) -> None:
    container = engine.run(ContainerSpec(image="busybox", command=("sleep", "3600")))
    proc = engine.exec(
        container.id, ExecSpec(command=("sh", "-c", "mkdir -p /data/sub && echo one > /data/sub/f"))
    )
    assert proc.wait() == 0
    out = tmp_path / "out"
    result = docker(docker_env, "cp", f"{container.id}:/data", str(out))
    assert result.returncode == 0, result.stderr
    assert (out / "sub" / "f").read_text() == "one\n"
    local = tmp_path / "local.txt"
    local.write_text("from host\n")
    result = docker(docker_env, "cp", str(local), f"{container.id}:/tmp/renamed.txt")
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "folder"
    (folder / "deep").mkdir(parents=True)
    (folder / "deep" / "x").write_text("x")
    assert docker(docker_env, "cp", str(folder), f"{container.id}:/data/").returncode == 0
    check = engine.exec(
        container.id,
        ExecSpec(
            command=("sh", "-c", "cat /tmp/renamed.txt /data/folder/deep/x; stat -c %u /tmp/renamed.txt")
        ),
        stdout=subprocess.PIPE,
    )
    assert check.communicate(timeout=30)[0] == b"from host\nx0\n"
    missing = docker(docker_env, "cp", f"{container.id}:/nope", str(tmp_path / "n"))
    assert missing.returncode != 0 and b"Could not find the file /nope" in missing.stderr
    # stdout as a tar stream, and the stat the CLI reads
    result = docker(docker_env, "cp", f"{container.id}:/data/sub/f", "-")
    with tarfile.open(fileobj=io.BytesIO(result.stdout)) as tar:
        assert tar.getnames() == ["f"]


def test_hostile_cp_through_the_cli_never_touches_the_host(
    engine: Engine, docker_env: dict[str, str], tmp_path: Path
) -> None:
    secret_dir = tmp_path / "host-secret"
    secret_dir.mkdir()
    (secret_dir / "secret").write_text("host secret\n")
    container = engine.run(ContainerSpec(image="busybox", command=("sleep", "3600")))
    plant = f"ln -s {secret_dir}/secret /leak; ln -s / /rootlink; mkdir -p /box; ln -s {secret_dir} /box/evil"
    assert engine.exec(container.id, ExecSpec(command=("sh", "-c", plant))).wait() == 0
    for path in ("/leak/", f"/rootlink{secret_dir}/secret", "/box/evil/secret"):
        result = docker(docker_env, "cp", f"{container.id}:{path}", str(tmp_path / "got"))
        assert result.returncode != 0 and b"Could not find the file" in result.stderr, path
        assert not (tmp_path / "got").exists()
    result = docker(docker_env, "cp", f"{container.id}:/box", str(tmp_path / "box"))
    assert result.returncode == 0
    assert os.readlink(tmp_path / "box" / "evil") == str(secret_dir)  # the link itself, not the host files
    # into the container through its links: lands inside the container, never on the host
    payload = tmp_path / "secret"
    payload.write_text("pwned\n")
    docker(docker_env, "cp", str(payload), f"{container.id}:/box/evil/")
    docker(docker_env, "cp", str(payload), f"{container.id}:/rootlink{secret_dir}/")
    assert (secret_dir / "secret").read_text() == "host secret\n"
    # a hand-made hostile archive on stdin
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("../../../../../../../../" + str(secret_dir / "secret").lstrip("/"))
        info.size = 6
        tar.addfile(info, io.BytesIO(b"pwned\n"))
    result = docker(docker_env, "cp", "-", f"{container.id}:/tmp", input=buffer.getvalue())
    assert result.returncode != 0 and b".." in result.stderr
    assert (secret_dir / "secret").read_text() == "host secret\n"


def test_docker_py_tty_exec_attach_socket_and_archives(engine: Engine, docker_env: dict[str, str]) -> None:
    import docker  # docker-py, a client nobody here wrote

    client = docker.DockerClient(base_url=docker_env["DOCKER_HOST"], version="auto")
    try:
        container = client.containers.run("busybox", "sh", detach=True, tty=True, stdin_open=True)
        code, output = container.exec_run(["sh", "-c", "tty; echo ok"], tty=True)
        assert code == 0 and output.startswith(b"/dev/pts/") and output.endswith(b"ok\r\n")
        sock = container.attach_socket(params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
        raw = sock._sock  # docker-py hands out a SocketIO; writing goes to the socket under it
        raw.sendall(b"echo via-py-$((4*4))\n")
        seen = b""
        deadline = time.monotonic() + 20
        while b"via-py-16" not in seen and time.monotonic() < deadline:
            seen += raw.recv(65536)
        assert b"via-py-16" in seen  # a TTY: the raw stream, no frame headers
        raw.close()
        data = io.BytesIO()
        with tarfile.open(fileobj=data, mode="w") as tar:
            info = tarfile.TarInfo("from-py.txt")
            info.size = 3
            tar.addfile(info, io.BytesIO(b"py\n"))
        assert container.put_archive("/tmp", data.getvalue())
        bits, stat = container.get_archive("/tmp/from-py.txt")
        assert stat["name"] == "from-py.txt" and stat["size"] == 3
        with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as tar:
            member = tar.extractfile("from-py.txt")
            assert member is not None and member.read() == b"py\n"
        container.resize(height=20, width=70)
        container.remove(force=True)
    finally:
        client.close()


def test_run_it_rm_and_start_ai(engine: Engine, docker_env: dict[str, str]) -> None:
    term = Terminal([DOCKER, "run", "--rm", "-it", "busybox", "sh"], docker_env)
    term.read_until(b"# ")
    term.type(b"exit 2\r")
    assert term.wait() == 2
    deadline = time.monotonic() + 20
    while engine.list(all=True) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert engine.list(all=True) == []  # --rm removed it
    created = docker(docker_env, "create", "-it", "--name", "later", "busybox", "sh")
    assert created.returncode == 0, created.stderr
    term = Terminal([DOCKER, "start", "-ai", "later"], docker_env)
    term.read_until(b"# ")
    term.type(b"echo started-$((7*6)); exit 9\r")
    term.read_until(b"started-42")
    assert term.wait() == 9


def test_api_refusals_are_docker_shaped(engine: Engine, docker_env: dict[str, str]) -> None:
    import docker

    client = docker.APIClient(base_url=docker_env["DOCKER_HOST"], version="auto")
    try:
        plain = engine.run(ContainerSpec(image="busybox", command=("sleep", "3600")))
        with pytest.raises(docker.errors.APIError) as info:
            client.resize(plain.id, height=10, width=10)
        assert info.value.status_code == 400 and "no terminal" in info.value.explanation
        with pytest.raises(docker.errors.APIError) as info:
            client.resize(plain.id, height=0, width=10)
        assert info.value.status_code == 400
        with pytest.raises(docker.errors.NotFound) as info:
            client.get_archive(plain.id, "/no/such")
        assert "Could not find the file /no/such" in info.value.explanation
        with pytest.raises(docker.errors.NotFound):
            client.get_archive("nobody-has-this", "/etc")
        with pytest.raises(docker.errors.APIError) as info:
            client.put_archive(plain.id, "/etc/passwd", b"")
        assert info.value.status_code == 400 and "not a directory" in info.value.explanation
        hostile = io.BytesIO()
        with tarfile.open(fileobj=hostile, mode="w") as tar:
            link = tarfile.TarInfo("up")
            link.type, link.linkname = tarfile.SYMTYPE, "/"
            tar.addfile(link)
            info_member = tarfile.TarInfo("up/tmp/planted")
            info_member.size = 1
            tar.addfile(info_member, io.BytesIO(b"x"))
        with pytest.raises(docker.errors.APIError) as info:
            client.put_archive(plain.id, "/tmp", hostile.getvalue())
        assert info.value.status_code == 400 and "symlink" in info.value.explanation
        assert not os.path.exists("/tmp/planted")
        response = client._get(client._url("/containers/{0}/archive", plain.id))  # no path parameter
        assert response.status_code == 400 and "path parameter is required" in response.json()["message"]
    finally:
        client.close()


def test_cp_follows_docker_rules_for_names_contents_and_links(
    engine: Engine, docker_env: dict[str, str], tmp_path: Path
) -> None:
    container = engine.run(ContainerSpec(image="busybox", command=("sleep", "3600")))
    script = "mkdir -p /src/in && echo a > /src/a && echo b > /src/in/b && ln -s /src/a /link"
    assert engine.exec(container.id, ExecSpec(command=("sh", "-c", script))).wait() == 0
    (tmp_path / "contents").mkdir()
    assert docker(docker_env, "cp", f"{container.id}:/src/.", str(tmp_path / "contents")).returncode == 0
    assert sorted(p.name for p in (tmp_path / "contents").iterdir()) == ["a", "in"]  # the content only
    assert docker(docker_env, "cp", f"{container.id}:/link", str(tmp_path / "asis")).returncode == 0
    assert os.readlink(tmp_path / "asis") == "/src/a"  # the link itself
    assert docker(docker_env, "cp", "-L", f"{container.id}:/link", str(tmp_path / "followed")).returncode == 0
    assert (tmp_path / "followed").read_text() == "a\n"  # -L: what it points to, in the container
    result = docker(docker_env, "cp", str(tmp_path / "contents"), f"{container.id}:/newdir")
    assert result.returncode == 0, result.stderr
    listing = engine.exec(
        container.id, ExecSpec(command=("sh", "-c", "cat /newdir/a /newdir/in/b")), stdout=subprocess.PIPE
    )
    assert listing.communicate(timeout=30)[0] == b"a\nb\n"  # a new name: the directory is renamed
    result = docker(docker_env, "cp", str(tmp_path / "asis"), f"{container.id}:/src/a/deeper")
    assert result.returncode != 0  # /src/a is a file: nothing can go below it
