"""What /proc says about a container's processes and the host: `top` rows, CPU time, network counters.

The parsers are pure functions of the files' text (unit-tested without a container);
the readers around them only open the files.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

TOP_TITLES = ("UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD")
"""The columns of `ps -ef`, what `docker top` shows by default."""

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/<pid>/stat that `top` needs (times in clock ticks)."""

    pid: int
    comm: str
    ppid: int
    tty_nr: int
    utime: int
    stime: int
    starttime: int


def parse_proc_stat(text: str) -> ProcStat:
    """Parse /proc/<pid>/stat; the command name may hold spaces and parentheses."""
    head, _, rest = text.rpartition(")")
    pid_text, _, comm = head.partition(" (")
    fields = rest.split()
    return ProcStat(
        pid=int(pid_text),
        comm=comm,
        ppid=int(fields[1]),
        tty_nr=int(fields[4]),
        utime=int(fields[11]),
        stime=int(fields[12]),
        starttime=int(fields[19]),
    )


def effective_uid(status_text: str) -> int:
    """The effective uid from /proc/<pid>/status (what `ps -ef` shows)."""
    for line in status_text.splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[2])
    raise ValueError("no Uid line")


def tty_name(tty_nr: int) -> str:
    """A controlling terminal number as ps names it: 'pts/0', 'tty1', or '?' for none."""
    major = (tty_nr >> 8) & 0xFFF
    minor = (tty_nr & 0xFF) | ((tty_nr >> 12) & 0xFFF00)
    if tty_nr == 0:
        return "?"
    if 136 <= major <= 143:
        return f"pts/{minor + (major - 136) * 256}"
    if major == 4:
        return f"tty{minor}"
    return "?"


def cpu_time_text(ticks: int, hz: int = CLOCK_TICKS) -> str:
    """Cumulative CPU time as ps's TIME column: HH:MM:SS, with 'D-' in front past a day."""
    seconds = ticks // hz
    days, seconds = divmod(seconds, 86400)
    clock = f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    return f"{days}-{clock}" if days else clock


def start_time_text(started: float, now: float) -> str:
    """ps's STIME: 'HH:MM' for a process started today, else 'Mondd'."""
    start, today = datetime.fromtimestamp(started), datetime.fromtimestamp(now)
    return start.strftime("%H:%M") if start.date() == today.date() else start.strftime("%b%d")


def cpu_percent_text(ticks: int, started: float, now: float, hz: int = CLOCK_TICKS) -> str:
    """ps's C column: CPU time over lifetime, in whole percent (at most 99)."""
    elapsed = now - started
    if elapsed <= 0:
        return "0"
    return str(min(int(ticks / hz / elapsed * 100), 99))


def boot_time(stat_text: str) -> float:
    """The host's boot time (Unix seconds) from /proc/stat."""
    for line in stat_text.splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise ValueError("no btime line")


def system_cpu_ns(stat_text: str, hz: int = CLOCK_TICKS) -> int:
    """The host's total CPU time in nanoseconds (the first 'cpu' line of /proc/stat), as dockerd
    reports ``system_cpu_usage``: user, nice, system, idle, iowait, irq, softirq and steal."""
    for line in stat_text.splitlines():
        if line.startswith("cpu "):
            ticks = sum(int(v) for v in line.split()[1:9])
            return ticks * 1_000_000_000 // hz
    raise ValueError("no cpu line")


@dataclass(frozen=True)
class NetCounters:
    """One interface's counters from /proc/<pid>/net/dev."""

    rx_bytes: int = 0
    rx_packets: int = 0
    rx_errors: int = 0
    rx_dropped: int = 0
    tx_bytes: int = 0
    tx_packets: int = 0
    tx_errors: int = 0
    tx_dropped: int = 0


def parse_net_dev(text: str) -> dict[str, NetCounters]:
    """Per interface (loopback left out, as dockerd does) the counters of /proc/<pid>/net/dev."""
    result = {}
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        name = name.strip()
        if not sep or name == "lo":
            continue
        v = [int(x) for x in rest.split()]
        result[name] = NetCounters(v[0], v[1], v[2], v[3], v[8], v[9], v[10], v[11])
    return result


@dataclass(frozen=True)
class ProcessRow:
    """One process of `top`: the `ps -ef` columns, pids as the host sees them."""

    uid: str
    pid: int
    ppid: int
    c: str
    stime: str
    tty: str
    time: str
    cmd: str

    def columns(self) -> list[str]:
        """The row in the order of TOP_TITLES."""
        return [self.uid, str(self.pid), str(self.ppid), self.c, self.stime, self.tty, self.time, self.cmd]


def printable(text: str) -> str:
    """``text`` with every control character as '?', as ps shows them: a container's process
    cannot write escape sequences to the terminal of whoever lists it."""
    return "".join(c if c.isprintable() else "?" for c in text)


def user_name(uid: int) -> str:
    """The host's name for ``uid`` (a container's uids are usually unnamed: the number)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def cgroup_pids(directories: Iterable[Path]) -> list[int]:
    """Pids in these cgroup directories and every cgroup below them, sorted (missing ones skipped)."""
    pids: set[int] = set()
    for top in directories:
        for current, _dirs, files in os.walk(top):
            if "cgroup.procs" in files:
                with contextlib.suppress(OSError, ValueError):
                    pids.update(int(p) for p in Path(current, "cgroup.procs").read_text().split())
    return sorted(pids)


def process_rows(pids: Sequence[int], proc: Path = Path("/proc")) -> list[ProcessRow]:
    """The `ps -ef` row of each pid that still exists."""
    now = time.time()
    booted = boot_time((proc / "stat").read_text())
    rows = []
    for pid in pids:
        try:
            stat = parse_proc_stat((proc / str(pid) / "stat").read_text())
            uid = effective_uid((proc / str(pid) / "status").read_text())
            argv = (proc / str(pid) / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        except (OSError, ValueError, IndexError):
            continue  # it ended meanwhile
        command = printable(" ".join(a.decode(errors="replace") for a in argv if a) or f"[{stat.comm}]")
        started = booted + stat.starttime / CLOCK_TICKS
        ticks = stat.utime + stat.stime
        rows.append(
            ProcessRow(
                uid=user_name(uid),
                pid=stat.pid,
                ppid=stat.ppid,
                c=cpu_percent_text(ticks, started, now),
                stime=start_time_text(started, now),
                tty=tty_name(stat.tty_nr),
                time=cpu_time_text(ticks),
                cmd=command,
            )
        )
    return rows


def host_cpu_ns(proc: Path = Path("/proc")) -> int:
    """The host's total CPU time now, in nanoseconds."""
    return system_cpu_ns((proc / "stat").read_text())


def online_cpus() -> int:
    """How many CPUs this host has online."""
    return os.cpu_count() or 1


def net_counters(pid: int, proc: Path = Path("/proc")) -> dict[str, NetCounters]:
    """The interfaces of the network namespace process ``pid`` is in ({} when it is gone)."""
    try:
        return parse_net_dev((proc / str(pid) / "net" / "dev").read_text())
    except OSError:
        return {}
