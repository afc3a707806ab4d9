"""The OCI config the engine writes: isolation defaults, checked without root."""

from __future__ import annotations

from engine.runtime.idmap import IdRange
from engine.runtime.oci_spec import BindMount, BundleSpec, ProcessSpec, build_config, process_json
from engine.runtime.seccomp import DENIED_SYSCALLS, default_profile


def _spec(uid: int = 0) -> BundleSpec:
    return BundleSpec(
        process=ProcessSpec(args=("/bin/sh",), env=("PATH=/bin",), cwd="/", uid=uid, gid=uid),
        hostname="h1",
        id_range=IdRange(200000),
        cgroups_path="/inst/tenants/t/abc",
        binds=(BindMount("/host/file", "/etc/hosts", read_only=False),),
    )


def test_every_namespace_including_user_is_new() -> None:
    config = build_config(_spec())
    kinds = {ns["type"] for ns in config["linux"]["namespaces"]}
    assert kinds == {"pid", "ipc", "uts", "mount", "cgroup", "user", "network"}
    assert all("path" not in ns for ns in config["linux"]["namespaces"])


def test_user_namespace_maps_root_to_the_tenant_range() -> None:
    config = build_config(_spec())
    assert config["linux"]["uidMappings"] == [{"containerID": 0, "hostID": 200000, "size": 65536}]
    assert config["linux"]["gidMappings"] == config["linux"]["uidMappings"]


def test_capabilities_are_dockers_default_without_net_raw() -> None:
    caps = build_config(_spec())["process"]["capabilities"]
    assert "CAP_NET_RAW" not in caps["bounding"]
    assert "CAP_SYS_ADMIN" not in caps["bounding"]
    assert "CAP_CHOWN" in caps["effective"]
    assert caps["ambient"] == []


def test_non_root_user_gets_no_effective_capabilities() -> None:
    caps = process_json(_spec(uid=1000).process)["capabilities"]
    assert caps["effective"] == [] and caps["permitted"] == []


def test_hardening_flags() -> None:
    config = build_config(_spec())
    assert config["process"]["noNewPrivileges"] is True
    assert "/proc/kcore" in config["linux"]["maskedPaths"]
    assert "/proc/sys" in config["linux"]["readonlyPaths"]
    assert config["linux"]["cgroupsPath"] == "/inst/tenants/t/abc"
    devices = config["linux"]["resources"]["devices"]
    assert devices[0] == {"allow": False, "access": "rwm"}
    sysfs = next(m for m in config["mounts"] if m["destination"] == "/sys")
    assert "ro" in sysfs["options"]


def test_rlimits_never_exceed_what_the_host_grants() -> None:
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    nofile = next(r for r in build_config(_spec())["process"]["rlimits"] if r["type"] == "RLIMIT_NOFILE")
    assert hard == resource.RLIM_INFINITY or nofile["hard"] <= hard


def test_seccomp_refuses_namespace_and_kernel_calls() -> None:
    profile = default_profile()
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    for name in ("unshare", "setns", "mount", "init_module", "kexec_load", "bpf", "keyctl"):
        assert name in DENIED_SYSCALLS
    clone_rule = next(r for r in profile["syscalls"] if r["names"] == ["clone"])
    assert clone_rule["args"][0]["op"] == "SCMP_CMP_MASKED_EQ"


def test_netns_path_is_joined_when_given() -> None:
    spec = _spec()
    spec = BundleSpec(**{**spec.__dict__, "netns_path": "/run/netns/x"})
    net = next(ns for ns in build_config(spec)["linux"]["namespaces"] if ns["type"] == "network")
    assert net == {"type": "network", "path": "/run/netns/x"}
