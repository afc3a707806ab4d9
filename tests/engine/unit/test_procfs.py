"""/proc parsers behind `top` and `stats`: process stat lines, uids, terminals, CPU and network counters."""

from __future__ import annotations

import os
import time
from pathlib import Path

from engine.runtime.procfs import (
    TOP_TITLES,
    cgroup_pids,
    cpu_percent_text,
    cpu_time_text,
    effective_uid,
    parse_net_dev,
    parse_proc_stat,
    process_rows,
    start_time_text,
    system_cpu_ns,
    tty_name,
)

STAT = "4242 (my (odd) prog) S 4200 4242 4242 34816 4242 4194560 120 0 0 0 250 50 0 0 20 0 1 0 98765 1234 56"


def test_a_stat_line_with_parentheses_in_the_name() -> None:
    s = parse_proc_stat(STAT)
    assert (s.pid, s.comm, s.ppid, s.tty_nr, s.utime, s.stime, s.starttime) == (
        4242,
        "my (odd) prog",
        4200,
        34816,
        250,
        50,
        98765,
    )


def test_effective_uid_is_the_second_field() -> None:
    assert effective_uid("Name:\tsh\nUid:\t100000\t100033\t100000\t100000\nGid:\t0\t0\t0\t0\n") == 100033


def test_terminal_names() -> None:
    assert tty_name(0) == "?"
    assert tty_name(34816) == "pts/0"  # major 136, minor 0
    assert tty_name((136 << 8) | 5) == "pts/5"
    assert tty_name((4 << 8) | 1) == "tty1"


def test_time_columns() -> None:
    assert cpu_time_text(100 * 3725, hz=100) == "01:02:05"
    assert cpu_time_text(100 * (86400 + 61), hz=100) == "1-00:01:01"
    assert cpu_percent_text(50, started=100.0, now=101.0, hz=100) == "50"
    assert cpu_percent_text(500, started=100.0, now=101.0, hz=100) == "99"
    now = time.mktime((2026, 12, 6, 15, 0, 0, 0, 0, -1))
    assert start_time_text(now - 3600, now) == "14:00"
    assert start_time_text(now - 3 * 86400, now) == "Dec03"


def test_system_cpu_sums_the_first_eight_fields() -> None:
    text = "cpu  10 20 30 40 50 60 70 80 90 100\ncpu0 1 2 3 4 5 6 7 8 9 10\n"
    assert system_cpu_ns(text, hz=100) == (10 + 20 + 30 + 40 + 50 + 60 + 70 + 80) * 10_000_000


def test_net_dev_without_loopback() -> None:
    header = (
        "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|...\n"
    )
    lo = "    lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n"
    eth0 = "  eth0:    5000      40    1    2    0     0          0         0     3000 30 3 4 0 0 0 0\n"
    text = header + lo + eth0
    counters = parse_net_dev(text)
    assert list(counters) == ["eth0"]
    eth0 = counters["eth0"]
    assert (eth0.rx_bytes, eth0.rx_packets, eth0.rx_errors, eth0.rx_dropped) == (5000, 40, 1, 2)
    assert (eth0.tx_bytes, eth0.tx_packets, eth0.tx_errors, eth0.tx_dropped) == (3000, 30, 3, 4)


def test_cgroup_pids_walk_child_cgroups(tmp_path: Path) -> None:
    (tmp_path / "a" / "child").mkdir(parents=True)
    (tmp_path / "a" / "cgroup.procs").write_text("12\n7\n")
    (tmp_path / "a" / "child" / "cgroup.procs").write_text("30\n")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "cgroup.procs").write_text("7\n")
    assert cgroup_pids([tmp_path / "a", tmp_path / "b", tmp_path / "missing"]) == [7, 12, 30]


def test_rows_of_this_process_and_a_gone_one() -> None:
    rows = process_rows([os.getpid(), 2**22 + 1])  # the second pid cannot exist
    assert len(rows) == 1
    assert rows[0].pid == os.getpid() and rows[0].ppid == os.getppid()
    assert "python" in rows[0].cmd or "pytest" in rows[0].cmd
    assert len(rows[0].columns()) == len(TOP_TITLES)


def test_a_hostile_command_line_cannot_reach_the_terminal(tmp_path: Path) -> None:
    (tmp_path / "stat").write_text("cpu  1 2 3 4 5 6 7 8\nbtime 1700000000\n")
    proc = tmp_path / "77"
    proc.mkdir()
    (proc / "stat").write_text("77 (x\x1b]0;owned\x07) S 1 77 77 0 77 0 0 0 0 0 5 5 0 0 20 0 1 0 100 0 0")
    (proc / "status").write_text("Uid:\t100000\t100000\t100000\t100000\n")
    (proc / "cmdline").write_bytes(b"sh\0-c\0printf '\x1b[2J'\nrm -rf /\0")
    (row,) = process_rows([77], proc=tmp_path)
    assert row.cmd == "sh -c printf '?[2J'?rm -rf /"
    (proc / "cmdline").write_bytes(b"")  # a kernel thread or a zombie: [comm], sanitized too
    (row,) = process_rows([77], proc=tmp_path)
    assert row.cmd == "[x?]0;owned?]"
