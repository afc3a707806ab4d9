"""From `POST /apps/` to a running container: on a remote host (an agent joined over HTTPS) against
the local one (enrolled in-process as `make run` enrolls its own); neither has the database.

The panel stack (bench/panel_stack.py: Redis, SQLite, the panel as `make run` serves it, its own
agent ``bench`` enrolled with ``manage.py enroll_local``, reaching the panel over loopback HTTP)
plus host ``remote``: `manage.py host add remote`, then the join command against the panel over
HTTPS (a Caddy with its own CA in front, as in production). Both have no database or panel Redis
URL in their environment, so they reconcile from ``GET /internal/v1/host/desired`` and report with
``POST /internal/v1/host/report`` as their own Redis ACL users. Each run cordons the other host, `POST`s a
one-replica busybox app and times until its container runs on the target's engine and the
panel's row says running; the app is then deleted (untimed). Runs alternate between the hosts.
Both agents share this machine (a remote host's network latency is not in the figure: it is
the path's own cost). Needs root (real containers).
Run: ``.venv/bin/python bench/remote_start.py [--runs 10]``.
"""

from __future__ import annotations

import argparse
import secrets
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_table, ratio_rows
from bench.enroll import add_host, https_front, join_args, joined_agent_args, joined_env
from bench.panel_stack import REPO, PanelStack, panel_stack, stop_process, wait_for
from engine.engine import Engine


def join_remote(stack: PanelStack, cleanup: ExitStack) -> Engine:
    """Enroll host ``remote`` and start its agent (no database); its engine."""
    token = add_host(stack.env, "remote")
    url, ca_file = https_front(stack, cleanup)
    root, instance = stack.scratch / "engine-remote", f"hpr-{secrets.token_hex(3)}"
    engine = Engine(root=root, instance=instance)
    engine.images.bootstrap_busybox()
    cleanup.callback(lambda: [engine.remove(c.id, force=True) for c in engine.list(all=True)])
    state = stack.scratch / "state-remote"
    env = joined_env(stack.env, stack.scratch / "var-remote", state) | {"HOSTPANEL_LOG_LEVEL": "WARNING"}
    command = join_args(url, token, ca_file, state, "--foreground")
    command += ["--", *joined_agent_args(root, instance)]
    with (stack.scratch / "agent-remote.log").open("ab") as out:
        agent = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    cleanup.callback(stop_process, agent)
    up = "select 1 from hosts_host where name = 'remote' and state = 'up'"
    wait_for(lambda: stack.db.execute(up).fetchone(), 90, "host remote to join and be up", 0.2)
    return engine


def only(stack: PanelStack, host: str) -> None:
    """New replicas go to ``host`` alone: every other host is cordoned."""
    stack.db.execute(f"update hosts_host set lifecycle = 'cordoned' where name <> '{host}'")
    stack.db.execute(f"update hosts_host set lifecycle = 'active' where name = '{host}'")
    stack.db.commit()


def replica_running(stack: PanelStack, app: str) -> bool:
    row = stack.db.execute(
        "select 1 from deployments_replica r join deployments_app a on a.id = r.app_id "
        f"where a.name = '{app}' and r.state = 'running'"
    ).fetchone()
    return row is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    opts = parser.parse_args()
    with panel_stack("remote") as stack, ExitStack() as cleanup:
        engines = {"local": stack.engine, "remote": join_remote(stack, cleanup)}
        hosts = {"local": "bench", "remote": "remote"}
        samples: dict[str, list[float]] = {"local": [], "remote": []}
        body = {"image": "busybox:latest", "command": ["sleep", "3600"], "networks": []}
        for run in range(opts.runs * 2):
            kind = ("local", "remote")[run % 2]
            engine, app = engines[kind], f"r{run}"
            only(stack, hosts[kind])
            started = time.monotonic()
            stack.api.call("POST", "/apps/", body | {"name": app})
            wait_for(
                lambda e=engine, a=app: (
                    any(c.name == f"demo-{a}-0" and c.is_running for c in e.list())
                    and replica_running(stack, a)
                ),
                60,
                f"{app} to run on {kind}",
            )
            samples[kind].append((time.monotonic() - started) * 1000)
            stack.api.call("DELETE", f"/apps/{app}/")
            wait_for(
                lambda e=engine, a=app: not any(c.name == f"demo-{a}-0" for c in e.list(all=True)),
                60,
                f"{app} to be removed",
                0.05,
            )
        print(f"\nPOST /apps/ to a running container, {opts.runs} runs each, alternated\n")
        print_table(["host", "min ms", "p50 ms", "p95 ms", "p50 / local"], ratio_rows(samples))


if __name__ == "__main__":
    main()
