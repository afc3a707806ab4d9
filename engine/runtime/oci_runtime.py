"""The seam around crun and conmon: every call to the OCI runtime goes through here.

conmon creates each container (``crun create``) and then stays as its
monitor: it holds the container's stdio, writes the log file and records the
exit code in the exit directory, so containers outlive the process that
started them.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import ContainerNotFound, HostNotReady, RuntimeFailure
from engine.fsutil import atomic_write_bytes

REOPEN_LOGS_MESSAGE = b"2 0 0\n"
SECCOMP_BPF_ANNOTATION = "run.oci.seccomp_bpf_data"
"""crun applies this base64 filter instead of compiling the config's ``linux.seccomp`` (crun(1))."""
CREATE_TIMEOUT_SECONDS = 60


def _binary(name: str) -> str:
    path = shutil.which(name, path="/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
    if path is None:
        raise HostNotReady(f"{name} is not installed; run `hpctl host setup` (or `make install`)")
    return path


@dataclass(frozen=True)
class MonitorFiles:
    """Where conmon writes what it keeps for one container."""

    bundle: Path
    log: Path
    pidfile: Path
    conmon_pidfile: Path
    exit_dir: Path
    persist_dir: Path

    @property
    def ctl_fifo(self) -> Path:
        return self.bundle / "ctl"

    @property
    def attach_socket(self) -> Path:
        """conmon's attach socket (SOCK_SEQPACKET): output out, stdin in."""
        return self.bundle / "attach"


@dataclass(frozen=True)
class StdioOptions:
    """How conmon wires the container's stdio.

    ``terminal``: the process gets a pseudo-terminal; conmon holds its master side (output to the
    log and to attached clients, input from them, resizes through the ctl fifo). ``stdin``: conmon
    keeps a stdin for the container that attached clients write to; ``leave_stdin_open`` keeps it
    open when a client detaches (otherwise the first detach closes it: the process reads EOF).
    """

    terminal: bool = False
    stdin: bool = False
    leave_stdin_open: bool = False

    def conmon_args(self) -> list[str]:
        """The conmon flags for these options."""
        args = ["--terminal"] if self.terminal else []
        if self.stdin:
            args.append("--stdin")
            if self.leave_stdin_open:
                args.append("--leave-stdin-open")
        return args


class OciRuntime:
    """crun driven with its state under ``state_dir``, containers created under conmon."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._crun: str | None = None
        self._conmon: str | None = None

    @property
    def crun(self) -> str:
        if self._crun is None:
            self._crun = _binary("crun")
        return self._crun

    @property
    def conmon(self) -> str:
        if self._conmon is None:
            self._conmon = _binary("conmon")
        return self._conmon

    # ---- compiled seccomp filters ---------------------------------------------------
    def _seccomp_file(self, profile: dict[str, Any]) -> Path:
        """Where the filter crun compiled from ``profile`` is kept: keyed by the profile and crun."""
        st = os.stat(self.crun)
        key = json.dumps([profile, self.crun, st.st_size, st.st_mtime_ns], sort_keys=True)
        return self.state_dir.parent / "seccomp" / f"{hashlib.sha256(key.encode()).hexdigest()}.bpf"

    def compiled_seccomp(self, profile: dict[str, Any]) -> str | None:
        """The base64 filter crun compiled earlier from this very ``profile``, if kept (see below)."""
        try:
            data = self._seccomp_file(profile).read_bytes()
        except OSError:
            return None
        return base64.b64encode(data).decode() if data else None

    def keep_compiled_seccomp(self, cid: str, profile: dict[str, Any]) -> None:
        """Keep the filter crun compiled for container ``cid`` from ``profile`` (it writes it to its
        state for `exec`), so later creates pass it as :data:`SECCOMP_BPF_ANNOTATION` and crun
        skips compiling the same profile again."""
        with contextlib.suppress(OSError):
            data = (self.state_dir / cid / "seccomp.bpf").read_bytes()
            if data:
                atomic_write_bytes(self._seccomp_file(profile), data, 0o600)

    def _crun_cmd(self, *args: str) -> list[str]:
        return [self.crun, f"--root={self.state_dir}", *args]

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        proc = subprocess.run(
            self._crun_cmd(*args), stdin=subprocess.DEVNULL, capture_output=True, check=False
        )
        if check and proc.returncode != 0:
            message = proc.stderr.decode(errors="replace").strip()
            if "does not exist" in message or "No such file" in message:
                raise ContainerNotFound(f"runtime has no container {args[-1]!r}: {message}")
            raise RuntimeFailure(f"crun {args[0]} failed: {message}")
        return proc

    def create(
        self, cid: str, name: str, files: MonitorFiles, log_size_max: int, stdio: StdioOptions | None = None
    ) -> int:
        """Create container ``cid`` from its bundle under a new conmon; return its pid.

        conmon always opens an attach socket (:meth:`MonitorFiles.attach_socket`); ``stdio`` adds a
        terminal and a stdin for interactive containers.

        Raises RuntimeFailure with crun's message when creation fails (the
        caller then cleans up; conmon leaves no process behind in that case).
        """
        files.exit_dir.mkdir(parents=True, exist_ok=True)
        files.persist_dir.mkdir(parents=True, exist_ok=True)
        read_end, write_end = os.pipe()
        args = [
            self.conmon,
            "--api-version",
            "1",
            "-c",
            cid,
            "-u",
            cid,
            "-n",
            name,
            "-r",
            self.crun,
            "-b",
            str(files.bundle),
            "-p",
            str(files.pidfile),
            "-P",
            str(files.conmon_pidfile),
            "-l",
            f"k8s-file:{files.log}",
            "--log-size-max",
            str(log_size_max),
            "--exit-dir",
            str(files.exit_dir),
            "--persist-dir",
            str(files.persist_dir),
            "--socket-dir-path",
            str(files.bundle),
            "--runtime-arg",
            f"--root={self.state_dir}",
            "--no-sync-log",
            *(stdio or StdioOptions()).conmon_args(),
        ]
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "_OCI_SYNCPIPE": str(write_end),
        }
        try:
            proc = subprocess.Popen(
                args,
                env=env,
                pass_fds=(write_end,),
                cwd=files.bundle,  # conmon writes its "oom" marker into its working directory
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        finally:
            os.close(write_end)
        # conmon writes one JSON line ({"data": pid} or a negative value and a
        # message) and keeps the pipe open afterwards: read that line only.
        with os.fdopen(read_end, "rb") as sync:
            ready, _, _ = select.select([sync], [], [], CREATE_TIMEOUT_SECONDS)
            raw = sync.readline() if ready else b""
        if not ready:
            self._abandon_monitor(proc, files)
            raise RuntimeFailure(
                f"the runtime did not create the container within {CREATE_TIMEOUT_SECONDS} s; "
                "check `hpctl host info` and the host's kernel log"
            )
        _out, err = proc.communicate()
        message: dict[str, Any] = json.loads(raw) if raw.strip() else {}
        pid = int(message.get("data", -1))
        if pid <= 0:
            detail = message.get("message") or err.decode(errors="replace").strip() or "no reason given"
            raise RuntimeFailure(f"the runtime could not create the container: {detail.strip()}")
        return pid

    @staticmethod
    def _abandon_monitor(proc: subprocess.Popen[bytes], files: MonitorFiles) -> None:
        """Kill a conmon that never answered (and the crun it runs): its whole session."""
        pids = {proc.pid}
        with contextlib.suppress(OSError, ValueError):
            pids.add(int(files.conmon_pidfile.read_text().strip()))
        for pid in pids:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
        proc.communicate()

    def start(self, cid: str) -> None:
        """Start a created container (its process runs its command).

        `crun start` only opens the container's exec fifo, unlinks it and
        writes one byte, which releases the waiting init into the command
        (the OCI create/start split). Doing that here saves a process spawn;
        when the fifo is not as expected we fall back to `crun start`.
        """
        fifo = self.state_dir / cid / "exec.fifo"
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            self._run("start", cid)
            return
        try:
            os.unlink(fifo)
            os.write(fd, b"\0")
        finally:
            os.close(fd)

    def kill(self, cid: str, signal: str, *, all_processes: bool = False) -> None:
        """Send ``signal`` to the container's init (or every process with all_processes)."""
        extra = ("--all",) if all_processes else ()
        self._run("kill", *extra, cid, signal)

    def pause(self, cid: str) -> None:
        """Freeze every process of the container (the cgroup freezer)."""
        self._run("pause", cid)

    def resume(self, cid: str) -> None:
        """Thaw a paused container."""
        self._run("resume", cid)

    def delete(self, cid: str, *, force: bool = False) -> None:
        """Remove crun's state (and the container's own cgroup); missing is fine."""
        args = ("delete", "--force", cid) if force else ("delete", cid)
        proc = self._run(*args, check=False)
        if proc.returncode != 0 and self.state(cid) is not None:
            raise RuntimeFailure(f"crun delete failed: {proc.stderr.decode(errors='replace').strip()}")

    def forget_stopped(self, cid: str, cgroup_dirs: list[Path]) -> bool:
        """Drop a stopped container's cgroups and crun state without spawning crun.

        This is what `crun delete` does for a container whose processes are all
        gone, at a fraction of the cost. Returns False, having removed nothing
        that still matters, when a cgroup still holds processes: then call
        :meth:`delete` with force.
        """
        for directory in cgroup_dirs:
            try:
                os.rmdir(directory)
            except FileNotFoundError:
                continue
            except OSError:
                return False
        shutil.rmtree(self.state_dir / cid, ignore_errors=True)
        return True

    def update(self, cid: str, resources: dict[str, Any]) -> None:
        """Change the limits of a created or running container at once (`crun update`).

        ``resources`` is an OCI ``linux.resources`` object; members it lacks
        keep their values. Raises ContainerNotFound when crun does not know
        ``cid`` and RuntimeFailure with crun's message when it refuses.
        """
        proc = subprocess.run(
            self._crun_cmd("update", "--resources=/dev/stdin", cid),
            input=json.dumps(resources).encode(),
            capture_output=True,
            check=False,
        )
        if proc.returncode != 0:
            message = proc.stderr.decode(errors="replace").strip()
            if "does not exist" in message or "No such file" in message:
                raise ContainerNotFound(f"runtime has no container {cid!r}: {message}")
            raise RuntimeFailure(f"crun update failed: {message}")

    def state(self, cid: str) -> dict[str, Any] | None:
        """crun's view of the container, or None when crun does not know it."""
        if not (self.state_dir / cid).exists():
            return None
        proc = self._run("state", cid, check=False)
        if proc.returncode != 0:
            return None
        result: dict[str, Any] = json.loads(proc.stdout)
        return result

    def exec_command(
        self,
        cid: str,
        process_file: Path,
        *,
        tty: bool = False,
        console_socket: Path | None = None,
        pid_file: Path | None = None,
    ) -> list[str]:
        """The argv that runs the process described in ``process_file`` inside ``cid``.

        With ``console_socket`` crun sends the terminal's master fd to that unix
        socket (SCM_RIGHTS) instead of relaying it; ``pid_file`` gets the pid.
        """
        extra = ["--tty"] if tty else []
        if console_socket is not None:
            extra += ["--console-socket", str(console_socket)]
        if pid_file is not None:
            extra += ["--pid-file", str(pid_file)]
        return self._crun_cmd("exec", *extra, "--process", str(process_file), cid)

    def reopen_log(self, files: MonitorFiles) -> bool:
        """Ask the container's conmon to reopen its log file (after a rotation)."""
        try:
            fd = os.open(files.ctl_fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            os.write(fd, REOPEN_LOGS_MESSAGE)
            return True
        except OSError:
            return False
        finally:
            os.close(fd)
