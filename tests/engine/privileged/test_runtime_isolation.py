"""Isolation claims from DESIGN.md, attacked from inside real containers."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from engine.engine import Engine
from engine.images.model import Image
from engine.runtime.model import ContainerSpec, ExecSpec

pytestmark = pytest.mark.privileged


def _exec(engine: Engine, cid: str, script: str) -> tuple[int, str]:
    proc = engine.exec(
        cid, ExecSpec(command=("sh", "-c", script)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    out, _ = proc.communicate(timeout=20)
    return proc.returncode, out.decode()


def _host_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError("no Uid line")


def test_root_inside_is_the_tenants_unprivileged_uid_outside(engine: Engine, busybox: Image) -> None:
    a = engine.run(ContainerSpec(image="busybox", command=("sleep", "30"), tenant="acme"))
    b = engine.run(ContainerSpec(image="busybox", command=("sleep", "30"), tenant="globex"))
    assert _exec(engine, a.id, "id -u") == (0, "0\n")
    uid_a, uid_b = _host_uid(a.pid), _host_uid(b.pid)
    assert uid_a == a.uid_base and uid_b == b.uid_base
    assert uid_a >= 100000 and uid_b >= 100000
    assert abs(uid_a - uid_b) >= 65536  # disjoint ranges of 65536 ids
    uid_map = Path(f"/proc/{a.pid}/uid_map").read_text().split()
    assert uid_map == ["0", str(a.uid_base), "65536"]


def test_files_written_inside_belong_to_the_tenant_range(engine: Engine, busybox: Image) -> None:
    c = engine.run(
        ContainerSpec(
            image="busybox",
            command=("sh", "-c", "echo x > /etc/newfile; echo y >> /etc/passwd; sleep 30"),
            tenant="acme",
        )
    )
    time.sleep(0.3)
    upper = engine.containers.store.directory(c.id) / "upper" / "etc"
    assert os.stat(upper / "newfile").st_uid == c.uid_base
    assert os.stat(upper / "passwd").st_uid == c.uid_base  # copied up: root could write its rootfs


def test_host_processes_and_mounts_are_invisible(engine: Engine, busybox: Image) -> None:
    c = engine.run(ContainerSpec(image="busybox", command=("sleep", "30")))
    code, out = _exec(engine, c.id, "ls /proc | grep -c '^[0-9]'")
    assert code == 0 and int(out) <= 4  # sleep, the exec'd shell, ls and grep
    code, out = _exec(engine, c.id, "cat /proc/1/cmdline | tr '\\0' ' '")
    assert out.strip() == "sleep 30"
    code, out = _exec(engine, c.id, "cat /proc/mounts")
    mount_points = {line.split()[1] for line in out.splitlines()}
    allowed = ("/proc", "/dev", "/sys", "/etc/hostname", "/etc/hosts")
    assert "/" in mount_points
    strays = [m for m in mount_points if m != "/" and not m.startswith(allowed)]
    assert strays == [], f"host mounts visible in the container: {strays}"
    assert str(os.getpid()) not in _exec(engine, c.id, "ls /proc")[1].split()


@pytest.mark.parametrize(
    "attack, words",
    [
        ("unshare -U true", "not permitted"),
        ("unshare -m true", "not permitted"),
        ("mount -t tmpfs none /mnt", "denied|not permitted"),
        ("echo 3 > /proc/sys/vm/drop_caches", "Read-only|denied"),
        ("cat /proc/timer_list | wc -c", ""),
        ("cat /proc/keys | wc -c", ""),
        ("mknod /tmp/sda b 8 0 && cat /tmp/sda", "not permitted|denied"),
    ],
)
def test_escape_attempts_fail(engine: Engine, busybox: Image, attack: str, words: str) -> None:
    c = engine.run(ContainerSpec(image="busybox", command=("sleep", "30")))
    code, out = _exec(engine, c.id, attack)
    if words:
        assert code != 0, out
        import re

        assert re.search(words, out), out
    else:
        assert out.strip() == "0"  # masked: reads as empty


def test_capabilities_inside_exclude_net_raw_and_sys_admin(engine: Engine, busybox: Image) -> None:
    c = engine.run(ContainerSpec(image="busybox", command=("sleep", "30")))
    _, out = _exec(engine, c.id, "grep CapEff /proc/self/status")
    eff = int(out.split()[1], 16)
    CAP_NET_RAW, CAP_SYS_ADMIN, CAP_CHOWN = 13, 21, 0
    assert eff & (1 << CAP_CHOWN)
    assert not eff & (1 << CAP_NET_RAW)
    assert not eff & (1 << CAP_SYS_ADMIN)
    _, out = _exec(engine, c.id, "grep NoNewPrivs /proc/self/status")
    assert out.split()[1] == "1"
    _, out = _exec(engine, c.id, "grep Seccomp: /proc/self/status")
    assert out.split()[1] == "2"


def test_tenant_cannot_read_another_tenants_files(engine: Engine, busybox: Image) -> None:
    a = engine.run(
        ContainerSpec(
            image="busybox",
            tenant="acme",
            command=("sh", "-c", "echo secret > /root/key; chmod 600 /root/key; sleep 30"),
        )
    )
    time.sleep(0.3)
    b = engine.run(ContainerSpec(image="busybox", tenant="globex", command=("sleep", "30")))
    key = engine.containers.store.directory(a.id) / "upper/root/key"
    assert key.exists()
    # globex's root is an unprivileged uid of another range: even with the path, the file is not its own
    assert os.stat(key).st_uid == a.uid_base and not (b.uid_base <= os.stat(key).st_uid < b.uid_base + 65536)
    code, _out = _exec(engine, b.id, "cat /root/key")
    assert code != 0


def test_the_seccomp_filter_kept_from_the_first_create_still_refuses_in_later_containers(
    engine: Engine, busybox: Image
) -> None:
    from engine.runtime.oci_runtime import SECCOMP_BPF_ANNOTATION

    first = engine.run(ContainerSpec(image="busybox", command=("sleep", "30")))
    config = (engine.containers.store.directory(first.id) / "config.json").read_text()
    assert SECCOMP_BPF_ANNOTATION not in config  # crun compiled this one's profile
    # the second container gets the filter crun compiled for the first, not a fresh compile
    second = engine.run(ContainerSpec(image="busybox", command=("sh", "-c", "unshare -U true; echo rc=$?")))
    config = (engine.containers.store.directory(second.id) / "config.json").read_text()
    assert SECCOMP_BPF_ANNOTATION in config
    assert engine.wait(second.id).exit_code == 0
    assert "rc=1" in engine.containers.log_path(second).read_text()  # its init is filtered
    third = engine.run(ContainerSpec(image="busybox", command=("sleep", "30")))
    code, out = _exec(engine, third.id, "unshare -U true")  # and so are processes exec'd into it
    assert code != 0 and "not permitted" in out, out
    _, out = _exec(engine, third.id, "grep Seccomp: /proc/self/status")
    assert out.split()[1] == "2"
