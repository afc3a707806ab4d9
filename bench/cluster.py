"""Host death: the time from SIGKILLing a host agent to its replicas running on another host.

The panel stack (bench/panel_stack.py: Redis, SQLite, the panel, its own agent ``bench``,
cordoned here so it only runs the periodic dead-host check like any agent) plus two host
agents ``k1`` and ``k2`` on engines of their own, heartbeating every ``--heartbeat`` s, a host
dead after ``--threshold`` s without one (``HOSTPANEL_HOST_GRACE_SECONDS``). The demo
tenant's app ``svc`` (busybox ``sleep``, ``--replicas`` replicas) spreads over k1 and k2.
Each kill: SIGKILL the agent of the host that runs the replicas (k1 first, then whichever
holds them), time until every replica runs on the other host (the panel's rows say running,
and the survivor's engine runs the container); then start the killed agent again and wait
until it has fenced (removed) its moved containers, untimed. Prints p50/p95 over ``--kills``.
Needs root (real containers).
Run: ``.venv/bin/python bench/cluster.py [--kills 10] [--threshold 5] [--heartbeat 1]``.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_table, summary
from bench.panel_stack import REPO, PanelStack, panel_stack, stop_process, wait_for
from engine.engine import Engine


class HostAgent:
    """One extra host agent of the stack, on its own engine, that can be killed and started again."""

    def __init__(self, stack: PanelStack, name: str, heartbeat: float) -> None:
        self.name, self.stack = name, stack
        self.root, self.instance = (
            stack.scratch / f"engine-{name}",
            f"hpk-{name}-{time.monotonic_ns() % 10**6}",
        )
        self.engine = Engine(root=self.root, instance=self.instance)
        self.engine.images.bootstrap_busybox()
        self.args = [
            sys.executable,
            "manage.py",
            "hostagent",
            "--name",
            name,
            "--engine-root",
            str(self.root),
        ]
        self.args += ["--instance", self.instance, "--heartbeat-interval", str(heartbeat)]
        self.args += ["--reconcile-interval", "2", "--cpus", "4", "--memory", str(8 * 1024**3)]
        self.args += ["--address", "127.0.0.1", "--loglevel", "WARNING"]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.stack.scratch / f"agent-{self.name}.log").open("ab") as out:
            self.proc = subprocess.Popen(self.args, cwd=REPO, env=self.stack.env, stdout=out, stderr=out)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def running(self, prefix: str) -> list[str]:
        return sorted(c.name for c in self.engine.list() if c.name.startswith(prefix) and c.is_running)

    def clean(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        for container in self.engine.list(all=True):
            self.engine.remove(container.id, force=True)


def placements(stack: PanelStack) -> dict[str, str]:
    """{container name: host name} of the app's running replicas."""
    rows = stack.db.execute(
        "select r.container_name, h.name from deployments_replica r join hosts_host h on h.id = r.host_id "
        "join deployments_app a on a.id = r.app_id where a.name = 'svc' and r.state = 'running'"
    ).fetchall()
    return dict(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--threshold", type=float, default=5.0)
    parser.add_argument("--heartbeat", type=float, default=1.0)
    parser.add_argument("--replicas", type=int, default=2)
    opts = parser.parse_args()
    extra = {"HOSTPANEL_HOST_GRACE_SECONDS": str(opts.threshold)}
    agent_args = ["--heartbeat-interval", str(opts.heartbeat)]
    with panel_stack("cluster", extra, agent_args) as stack, ExitStack() as cleanup:
        stack.db.execute("update hosts_host set lifecycle = 'cordoned' where name = 'bench'")
        stack.db.commit()
        agents = {name: HostAgent(stack, name, opts.heartbeat) for name in ("k1", "k2")}
        for agent in agents.values():
            cleanup.callback(agent.clean)
            agent.start()
        up = "select count(*) from hosts_host where name in ('k1', 'k2') and state = 'up'"
        wait_for(lambda: stack.db.execute(up).fetchone()[0] == 2, 60, "k1 and k2 to register", 0.2)
        # no tenant network: the two agents share this machine's one network stack
        body = {"name": "svc", "image": "busybox:latest", "command": ["sleep", "3600"], "networks": []}
        stack.api.call("POST", "/apps/", body | {"replicas": opts.replicas})
        wait_for(lambda: len(placements(stack)) == opts.replicas, 60, "svc to run", 0.2)
        samples = []
        victim = "k1"
        for kill in range(opts.kills):
            survivor = "k2" if victim == "k1" else "k1"
            agents[victim].kill()
            killed = time.monotonic()
            wait_for(
                lambda s=survivor: (
                    set(placements(stack).values()) == {s}
                    and len(placements(stack)) == opts.replicas
                    and len(agents[s].running("demo-svc-")) == opts.replicas
                ),
                opts.threshold + 120,
                f"kill {kill + 1}: svc to run on {survivor}",
            )
            samples.append(time.monotonic() - killed)
            agents[victim].start()
            wait_for(lambda v=victim: agents[v].running("demo-svc-") == [], 60, f"{victim} to fence", 0.2)
            up_again = f"select 1 from hosts_host where name = '{victim}' and state = 'up'"
            wait_for(lambda q=up_again: stack.db.execute(q).fetchone(), 60, f"{victim} to be up", 0.2)
            victim = survivor  # it now holds every replica
        low, p50, p95 = summary(samples)
        print(
            f"\nhost death to its replicas running elsewhere ({opts.replicas} replicas, threshold "
            f"{opts.threshold:g} s, heartbeat every {opts.heartbeat:g} s, {opts.kills} kills)\n"
        )
        print_table(
            ["", "min", "p50", "p95", "p50 minus the threshold"],
            [["seconds", f"{low:.2f}", f"{p50:.2f}", f"{p95:.2f}", f"{p50 - opts.threshold:.2f}"]],
        )


if __name__ == "__main__":
    main()
