"""Host death: the time from a host's death (agent SIGKILLed, link cut) to its replicas running elsewhere.

The multi-host model of issue 15 on one machine (bench/underlay.py): ``--hosts`` hosts ``k1``,
``k2``, ... each in a network namespace of its own on a bridge, enrolled with ``manage.py host
add`` and the join command over HTTPS (a Caddy with its own CA in front of the panel), their
agents with no database or panel Redis URL, heartbeating every ``--heartbeat`` s and
reconciling every 10 s (the agent's default: a moved replica reaches its new host by the task
the panel queues for it). The panel stack (bench/panel_stack.py: Redis, SQLite, the panel, no
agent of its own) listens on the bridge's address; ``manage.py watchhosts --interval
--watch-interval`` runs the panel's periodic host checks, a host dead after ``--threshold`` s
without a heartbeat (``HOSTPANEL_HOST_GRACE_SECONDS``). The demo tenant's app ``svc`` (busybox
``sleep``, ``--replicas`` stateless replicas, no tenant network) spreads over the hosts.

Each kill takes the next host (in turn) that holds replicas, SIGKILLs its agent and cuts its
link (its veth's end on the bridge down: its containers keep running, unreachable), and times
until all the replicas run on the surviving hosts: the panel's rows say running, none on the
dead host, and the survivors' engines run them all. Then, untimed, the link comes back, the agent
is started again from its state directory (as its systemd unit does), and the bench waits until
it has fenced (removed) what moved away and is up, exactly ``--replicas`` running in all.
Prints min/p50/p95 over ``--kills``. Everything (namespaces, veths, bridge, containers, mounts,
processes) is removed at the end, on failure, Ctrl-C or SIGTERM too. Needs root and caddy.
Run: ``.venv/bin/python bench/cluster.py [--kills 10] [--hosts 3] [--replicas 3] [--threshold 5]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_table, summary
from bench.enroll import add_host, https_front
from bench.panel_stack import PanelStack, panel_stack, process, stop_process, wait_for
from bench.underlay import JoinedHost, join_host, set_link, underlay

PREFIX = "demo-svc-"  # the app's containers


def placements(stack: PanelStack) -> dict[str, str]:
    """{container name: host name} of the app's replicas the panel has as running."""
    rows = stack.db.execute(
        "select r.container_name, h.name from deployments_replica r join hosts_host h on h.id = r.host_id "
        "join deployments_app a on a.id = r.app_id where a.name = 'svc' and r.state = 'running'"
    ).fetchall()
    return dict(rows)


def is_up(stack: PanelStack, name: str) -> bool:
    """Whether the panel has host ``name`` up."""
    row = stack.db.execute(f"select state from hosts_host where name = '{name}'").fetchone()
    return row is not None and row[0] == "up"


def running_on(hosts: list[JoinedHost]) -> int:
    """How many of the app's containers the engines of ``hosts`` run."""
    return sum(len(h.running(PREFIX)) for h in hosts)


def leave(hosts: dict[str, JoinedHost]) -> None:
    """Stop every host's agent, then remove what its engine holds (containers, networks, mounts)."""
    for host in hosts.values():
        if host.proc is not None:
            stop_process(host.proc)
    for host in hosts.values():
        host.clean()


def next_victim(stack: PanelStack, order: list[str], start: int) -> str:
    """The first host from ``order[start]`` on (round) that holds replicas of the app."""
    holding = set(placements(stack).values())
    turn = [order[(start + i) % len(order)] for i in range(len(order))]
    return next(name for name in turn if name in holding)


def kill_and_time(
    stack: PanelStack, hosts: dict[str, JoinedHost], victim: str, opts: argparse.Namespace
) -> float:
    """Kill host ``victim`` (SIGKILL, link cut); seconds until the replicas run on the others."""
    dead = hosts[victim]
    survivors = [h for name, h in hosts.items() if name != victim]
    dead.kill()
    set_link(dead.link, up=False)
    killed = time.monotonic()

    def moved() -> bool:
        placed = placements(stack)
        return (
            len(placed) == opts.replicas
            and victim not in placed.values()
            and running_on(survivors) == opts.replicas
        )

    wait_for(moved, opts.threshold + 120, f"{victim}'s replicas to run elsewhere", 0.05)
    return time.monotonic() - killed


def bring_back(stack: PanelStack, hosts: dict[str, JoinedHost], victim: str, replicas: int) -> None:
    """Link up, agent started again; wait until it fenced what moved away and is up (untimed)."""
    dead = hosts[victim]
    set_link(dead.link, up=True)
    dead.restart()
    wait_for(lambda: dead.running(PREFIX) == [], 120, f"{victim} to fence its moved containers", 0.2)
    wait_for(lambda: is_up(stack, victim), 120, f"{victim} to be up again", 0.2)
    everywhere = list(hosts.values())
    wait_for(
        lambda: running_on(everywhere) == replicas and len(placements(stack)) == replicas,
        60,
        f"exactly {replicas} replicas running after {victim} came back",
        0.2,
    )


def measure(stack: PanelStack, hosts: dict[str, JoinedHost], opts: argparse.Namespace) -> list[float]:
    """The app spread over the hosts, then ``opts.kills`` host deaths timed, each host brought back."""
    body = {"name": "svc", "image": "busybox:latest", "command": ["sleep", "3600"], "networks": []}
    stack.api.call("POST", "/apps/", body | {"replicas": opts.replicas})
    wait_for(
        lambda: len(placements(stack)) == opts.replicas and running_on(list(hosts.values())) == opts.replicas,
        120,
        "svc to run",
        0.2,
    )
    order, start, samples = list(hosts), 0, []
    for kill in range(opts.kills):
        victim = next_victim(stack, order, start)
        held = sum(1 for h in placements(stack).values() if h == victim)
        samples.append(kill_and_time(stack, hosts, victim, opts))
        print(
            f"kill {kill + 1}: {victim} ({held} of {opts.replicas} replicas) {samples[-1]:.2f} s", flush=True
        )
        bring_back(stack, hosts, victim, opts.replicas)
        start = order.index(victim) + 1
    return samples


def remove_empty(directory: Path) -> None:
    """rmdir ``directory`` if it is empty (never anything recursive)."""
    with contextlib.suppress(OSError):
        directory.rmdir()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--hosts", type=int, default=3, help="enrolled hosts (at least 2)")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--threshold", type=float, default=5.0, help="seconds without a heartbeat: dead")
    parser.add_argument("--heartbeat", type=float, default=1.0, help="the agents' heartbeat interval")
    parser.add_argument("--watch-interval", type=float, default=2.0, help="manage.py watchhosts --interval")
    opts = parser.parse_args()
    if opts.hosts < 2:
        parser.error("--hosts: at least 2 (one dies, another takes its replicas)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))  # clean up on `timeout` too
    names = tuple(f"k{i + 1}" for i in range(opts.hosts))
    extra = {"HOSTPANEL_HOST_GRACE_SECONDS": str(opts.threshold)}
    agent_args = ("--heartbeat-interval", str(opts.heartbeat), "--reconcile-interval", "10")
    spaces = Path(tempfile.mkdtemp(prefix="hpbench-netns-", dir=os.environ.get("HPBENCH_DIR", "/var/tmp")))
    hosts: dict[str, JoinedHost] = {}
    with ExitStack() as cleanup:
        cleanup.callback(remove_empty, spaces)  # underlay() removes the namespaces' files
        net = cleanup.enter_context(underlay(spaces, names))
        stack = cleanup.enter_context(panel_stack("cluster", extra, address=net.panel_ip, local_agent=False))
        url, ca_file = https_front(stack, cleanup, net.panel_ip)
        watch = [sys.executable, "manage.py", "watchhosts", "--interval", str(opts.watch_interval)]
        cleanup.enter_context(process(watch, stack.env, stack.scratch / "watchhosts.log"))
        cleanup.callback(leave, hosts)
        for name in names:
            token = add_host(stack.env, name)
            hosts[name] = join_host(net, name, stack.scratch, (url, ca_file, stack.env), token, agent_args)
        for name in names:
            wait_for(lambda n=name: is_up(stack, n), 120, f"{name} to join and be up", 0.2)
        try:
            samples = measure(stack, hosts, opts)
        except BaseException:
            for host in hosts.values():
                print(f"--- {host.name}'s log\n{host.log_tail(20)}", file=sys.stderr)
            raise
        low, p50, p95 = summary(samples)
        print(
            f"\nhost death (agent SIGKILLed, link cut) to its replicas running elsewhere: {opts.hosts} "
            f"enrolled hosts, {opts.replicas} replicas, threshold {opts.threshold:g} s, "
            f"heartbeat every {opts.heartbeat:g} s, watchhosts every {opts.watch_interval:g} s "
            f"(load {os.getloadavg()[0]:.1f})\n"
        )
        print_table(
            [f"{opts.kills} kills", "min", "p50", "p95", "p50 minus the threshold"],
            [["seconds", f"{low:.2f}", f"{p50:.2f}", f"{p95:.2f}", f"{p50 - opts.threshold:.2f}"]],
        )


if __name__ == "__main__":
    main()
