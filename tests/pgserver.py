"""A private PostgreSQL 15 for the panel's tests: ``pytest --database=postgres`` (``make test``).

Loaded as a plugin (``-p tests.pgserver`` in pyproject's addopts) so it runs before
pytest-django reads the settings: it starts Debian's PostgreSQL 15 on a free loopback port with
its own data directory under ``var/test-postgres/`` (a fresh ``initdb`` per run, removed at the
end) and points ``DATABASE_URL`` at it; pytest-django then creates ``test_hostpanel`` there. The
URL carries a random password (scram-sha-256), like the private Redis of tests/stack.py.

PostgreSQL refuses to run as root, and ``var/`` is 0700, out of reach of Debian's ``postgres``
user: as root the server runs in a user namespace (``unshare --user``) where we are an ordinary
user, while the kernel still sees root as the owner of its files. Durability is off (``fsync``,
``synchronous_commit``, ``full_page_writes``): the database lives as long as the run.

``HOSTPANEL_TEST_DATABASE_URL=postgres://...`` uses a server of your own instead;
``HOSTPANEL_TEST_DATABASE=postgres`` is the option's default from the environment.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PG_BIN = Path(os.environ.get("HOSTPANEL_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
USER = "hostpanel"
DATABASE = "hostpanel"
START_TIMEOUT = 60.0


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--database",
        choices=("sqlite", "postgres"),
        default=os.environ.get("HOSTPANEL_TEST_DATABASE") or "sqlite",
        help="the database the panel's tests run on: sqlite (a file per run) or postgres "
        "(a private PostgreSQL 15 under var/test-postgres/, or HOSTPANEL_TEST_DATABASE_URL)",
    )


class PostgresServer:
    """One private ``postgres`` process and its data directory (both gone after :meth:`stop`)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.password = secrets.token_hex(24)

    @property
    def url(self) -> str:
        return f"postgres://{USER}:{self.password}@127.0.0.1:{self.port}/{DATABASE}"

    def _command(self, *args: str | Path) -> list[str]:
        """``args`` as an ordinary user: in a user namespace when we are root (see the module doc)."""
        argv = [str(a) for a in args]
        if os.geteuid() != 0:
            return argv
        return ["unshare", "--user", "--map-user=1000", "--map-group=1000", *argv]

    def start(self) -> str:
        """initdb, start, create the database; the server's URL."""
        initdb = PG_BIN / "initdb"
        if not initdb.exists():
            raise pytest.UsageError(
                f"--database=postgres needs PostgreSQL 15 ({initdb} is missing): `make install` installs it"
            )
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(parents=True, mode=0o700)
        data, sockets, log = (
            self.directory / "data",
            self.directory / "sockets",
            self.directory / "server.log",
        )
        sockets.mkdir(mode=0o700)
        pwfile = self.directory / "password"
        pwfile.touch(mode=0o600)
        pwfile.write_text(self.password + "\n")
        subprocess.run(
            self._command(
                initdb, "-D", data, "-U", USER, "--pwfile", pwfile, "-A", "scram-sha-256",
                "-E", "UTF8", "--locale=C.UTF-8", "--no-sync", "--no-instructions",
            ),
            check=True, capture_output=True,
        )  # fmt: skip
        from tests.stack import free_port

        self.port = free_port()
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                self._command(
                    PG_BIN / "postgres", "-D", data, "-p", str(self.port), "-k", sockets,
                    "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200",
                    "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                ),
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self._wait_ready(log)
        return self.url

    def _wait_ready(self, log: Path) -> None:
        import psycopg

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise pytest.UsageError(f"PostgreSQL exited: {log.read_text(errors='replace')[-2000:]}")
            try:
                with psycopg.connect(
                    self.url.rsplit("/", 1)[0] + "/postgres", connect_timeout=2, autocommit=True
                ) as conn:
                    conn.execute(f"CREATE DATABASE {DATABASE}")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise pytest.UsageError(
                        f"PostgreSQL did not answer within {START_TIMEOUT:.0f}s"
                    ) from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then remove the data directory."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def remove_orphans(parent: Path) -> None:
    """Stop and remove the servers of test runs that died without cleaning up (SIGKILL, a
    ``timeout``): each directory is named after its run's pid; a live run's is left alone."""
    if not parent.is_dir():
        return
    for directory in parent.iterdir():
        if not directory.name.isdigit() or _alive(int(directory.name)):
            continue
        try:
            postmaster = int((directory / "data" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            postmaster = 0
        if postmaster and _alive(postmaster):
            os.kill(postmaster, signal.SIGQUIT)  # immediate shutdown: the data is thrown away
            deadline = time.monotonic() + 10
            while _alive(postmaster) and time.monotonic() < deadline:
                time.sleep(0.1)
        shutil.rmtree(directory, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_server: PostgresServer | None = None


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """Before pytest-django loads the settings: point ``DATABASE_URL`` at PostgreSQL when asked."""
    global _server
    if early_config.known_args_namespace.database != "postgres":
        os.environ.pop("DATABASE_URL", None)  # the tests' SQLite file, whatever the shell says
        return
    given = os.environ.get("HOSTPANEL_TEST_DATABASE_URL")
    if given:
        os.environ["DATABASE_URL"] = given
        return
    var_dir = Path(os.environ.get("HOSTPANEL_VAR_DIR") or REPO / "var")
    var_dir.mkdir(mode=0o700, exist_ok=True)
    remove_orphans(var_dir / "test-postgres")
    _server = PostgresServer(var_dir / "test-postgres" / str(os.getpid()))
    try:
        os.environ["DATABASE_URL"] = _server.start()
    except BaseException:
        _server.stop()
        raise


def pytest_unconfigure(config: pytest.Config) -> None:
    if _server is not None:
        _server.stop()


def pytest_report_header(config: pytest.Config) -> str:
    url = os.environ.get("DATABASE_URL", "")
    return f"database: {'postgres ' + url.rsplit('@', 1)[-1] if url.startswith('postgres') else 'sqlite'}"
