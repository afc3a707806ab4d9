"""engine.compose.load_project: each supported key, each refusal with its line, paths, graphs."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path
from typing import Any

import pytest

from engine.compose import (
    BuildDef,
    ComposeError,
    HealthcheckDef,
    MountDef,
    PortDef,
    Project,
    SecretRef,
    load_project,
    service_digest,
    start_order,
)
from engine.errors import InvalidSpec


def load(text: str, **kw: Any) -> Project:
    return load_project(textwrap.dedent(text), name="p", **kw)


def refused(text: str, **kw: Any) -> list[str]:
    with pytest.raises(ComposeError) as info:
        load(text, **kw)
    assert isinstance(info.value, InvalidSpec)
    return [str(p) for p in info.value.problems]


FULL = """
services:
  web:
    image: busybox
    command: ["sh", "-c", "echo hi"]
    entrypoint: /bin/init --x 'a b'
    environment: [A=1, B, C]
    ports: ["80", "8080:80", "127.0.0.1:53:53/udp", {target: 443, published: 8443, host_ip: "::1"}]
    expose: ["9000", 9001, "7000-7001/tcp"]
    volumes: [data:/data:ro, /anon, {type: tmpfs, target: /run/x, tmpfs: {size: 2m}}]
    networks: {front: {aliases: [www, site]}}
    restart: on-failure:3
    deploy: {replicas: 3, resources: {limits: {cpus: 1.5, memory: 1g, pids: 50}}}
    secrets: [pw, {source: key, target: app.key}, {source: pw, target: /etc/pw}]
    labels: [a=b]
    user: "1000:1000"
    working_dir: /srv
    stop_signal: INT
    stop_grace_period: 1m30s
    init: true
    healthcheck: {test: "wget -q localhost", interval: 2s, timeout: 500ms, start_period: 1s, retries: 5}
networks: {front: {labels: {x: y}}}
volumes: {data: {external: true}}
secrets: {pw: {external: true}, key: {external: true}}
"""


def test_every_supported_key() -> None:
    project = load(FULL, environ={"B": "fromenv"})
    s = project.services["web"]
    assert s.command == ("sh", "-c", "echo hi")
    assert s.entrypoint == ("/bin/init", "--x", "a b")
    assert s.environment == {"A": "1", "B": "fromenv"}  # C is unset: not passed
    assert s.ports == (
        PortDef(80),
        PortDef(80, 8080),
        PortDef(53, 53, "udp", "127.0.0.1"),
        PortDef(443, 8443, "tcp", "::1"),
    )
    assert s.expose == (9000, 9001, 7000, 7001)
    assert s.volumes == (
        MountDef("volume", "data", "/data", True),
        MountDef("volume", None, "/anon"),
        MountDef("tmpfs", None, "/run/x", False, 2 * 1024**2),
    )
    assert s.networks == {"front": ("www", "site")}
    assert (s.restart, s.replicas, s.cpus, s.memory_bytes, s.pids) == ("on-failure:3", 3, 1.5, 1024**3, 50)
    assert s.secrets == (SecretRef("pw", "/run/secrets/pw"), SecretRef("key", "/run/secrets/app.key"),
                         SecretRef("pw", "/etc/pw"))  # fmt: skip
    assert s.labels == {"a": "b"}
    assert (s.user, s.working_dir, s.stop_signal, s.stop_grace_period, s.init) == (
        "1000:1000", "/srv", "SIGINT", 90.0, True)  # fmt: skip
    assert s.healthcheck == HealthcheckDef(("wget -q localhost",), True, 2.0, 0.5, 1.0, 5)
    assert s.line == 3
    assert project.networks["front"].labels == {"x": "y"}
    assert "default" not in project.networks
    assert project.volumes["data"].external


def test_implicit_default_network_and_depends_on_forms() -> None:
    project = load(
        """
        services:
          a: {image: x, depends_on: [b]}
          b: {image: x, depends_on: {c: {condition: service_healthy}}}
          c: {image: x, healthcheck: {test: [CMD, "true"]}}
          d: {image: x, depends_on: {c: {condition: service_completed_successfully, required: true}}}
        """
    )
    a, b = project.services["a"], project.services["b"]
    assert a.networks == {"default": ()} and "default" in project.networks
    assert a.depends_on == {"b": "service_started"}
    assert b.depends_on == {"c": "service_healthy"}
    assert start_order(project) == [["c"], ["b", "d"], ["a"]]


@pytest.mark.parametrize(
    ("test", "expected"),
    [
        ('["CMD", "ls", "-l"]', HealthcheckDef(("ls", "-l"))),
        ('["CMD-SHELL", "ls -l"]', HealthcheckDef(("ls -l",), shell=True)),
        ('["NONE"]', HealthcheckDef(disabled=True)),
    ],
)
def test_healthcheck_forms(test: str, expected: HealthcheckDef) -> None:
    text = f"services:\n  w:\n    image: x\n    healthcheck:\n      test: {test}\n"
    assert load_project(text, name="p").services["w"].healthcheck == expected
    disabled = "services:\n  w:\n    image: x\n    healthcheck: {disable: true}\n"
    assert load_project(disabled, name="p").services["w"].healthcheck == HealthcheckDef(disabled=True)


def test_unsupported_keys_one_report_with_lines_and_reasons() -> None:
    problems = refused(
        """
        services:
          web:
            image: busybox
            privileged: true
            network_mode: host
            pid: host
            cap_add: [SYS_ADMIN]
            devices: ["/dev/sda:/dev/sda"]
            extends: {service: other}
            profiles: [debug]
            container_name: fixed
            x-ours: ignored
            deploy:
              placement: {constraints: [node.role==manager]}
            build:
              context: .
              privileged: true
            ports: [{target: 80, mode: host}]
        configs:
          c: {file: ./c}
        x-anything: {privileged: true}
        """
    )
    assert problems[0] == (
        "line 5: services.web.privileged: 'privileged' is refused: security: it would weaken the "
        "container's isolation from the host or other tenants (full root on the host)"
    )
    lines = {p.split(":")[0] for p in problems}
    assert lines == {f"line {n}" for n in (5, 6, 7, 8, 9, 10, 11, 12, 15, 18, 19, 20)}
    assert sum("security" in p for p in problems) == 6
    assert any("services.web.deploy.placement" in p for p in problems)
    assert any("services.web.ports[0].mode" in p for p in problems)
    assert not any("x-" in p for p in problems)


def test_key_not_in_spec_named() -> None:
    (problem,) = refused("services:\n  web:\n    image: x\n    imagee: y\n")
    assert problem == "line 4: services.web.imagee: unknown key 'imagee': it is not in the compose spec"
    (problem,) = refused("services: {}\nfoo: 1\n")
    assert problem.startswith("line 2: foo: unknown key")


def test_schema_type_error_named() -> None:
    (problem,) = refused("services:\n  web:\n    image: x\n    restart: [no]\n")
    assert problem.startswith("line 4: services.web.restart:")


def test_bad_values_each_named() -> None:
    problems = refused(
        """
        services:
          web:
            image: x
            ports: ["70000:80", "1-3:1-2", "80/sctp"]
            expose: ["x"]
            restart: sometimes
            deploy: {replicas: -1, resources: {limits: {cpus: "0", memory: 12q}}}
            stop_grace_period: soon
            stop_signal: SIGNOPE
            working_dir: relative
            volumes: ["data:/d:z", "v:rel"]
            init: maybe
        volumes: {data: {}, v: {}}
        """
    )
    wheres = [p.split(": ")[1] for p in problems]
    assert wheres == [
        "services.web.ports[0]",
        "services.web.ports[1]",
        "services.web.ports[2]",
        "services.web.expose[0]",
        "services.web.restart",
        "services.web.deploy.replicas",
        "services.web.deploy.resources.limits.cpus",
        "services.web.deploy.resources.limits.memory",
        "services.web.stop_grace_period",
        "services.web.stop_signal",
        "services.web.working_dir",
        "services.web.volumes[0]",
        "services.web.volumes[1]",
        "services.web.init",
    ]


def test_host_binds_refused_unless_allowed(tmp_path: Path) -> None:
    text = "services:\n  web:\n    image: x\n    volumes: ['/etc:/host-etc', './data:/data:ro']\n"
    problems = refused(text)
    assert len(problems) == 2 and all("host bind mounts are refused" in p and "line 4" in p for p in problems)
    s = load(text, allow_host_binds=True, base_dir=tmp_path).services["web"]
    data = str(tmp_path / "data")
    assert s.volumes == (MountDef("bind", "/etc", "/host-etc"), MountDef("bind", data, "/data", True))
    long = "services:\n  web:\n    image: x\n    volumes: [{type: bind, source: /, target: /h}]\n"
    assert "host bind mounts are refused" in refused(long)[0]


def test_undefined_references() -> None:
    problems = refused(
        """
        services:
          web:
            image: x
            networks: [nope]
            volumes: [missing:/m]
            secrets: [hidden]
            depends_on: [ghost]
        """
    )
    assert problems == [
        "line 5: services.web.networks.nope: network 'nope' is not defined",
        "line 6: services.web.volumes[0]: volume 'missing' is not defined under volumes:",
        "line 7: services.web.secrets[0]: secret 'hidden' is not defined under secrets:",
        "line 8: services.web.depends_on.ghost: service 'ghost' is not defined",
    ]


def test_depends_on_cycle_named() -> None:
    problems = refused(
        """
        services:
          a: {image: x, depends_on: [b]}
          b: {image: x, depends_on: [c]}
          c: {image: x, depends_on: [a]}
          d: {image: x, depends_on: [d]}
        """
    )
    assert "depends_on cycle: a -> b -> c -> a" in problems[0] and problems[0].startswith("line 3:")
    assert "cannot depend on itself" in problems[1]


def test_service_healthy_needs_a_healthcheck() -> None:
    problems = refused(
        """
        services:
          web: {image: x, depends_on: {db: {condition: service_healthy}}}
          db: {image: x, healthcheck: {disable: true}}
        """
    )
    assert problems == [
        "line 3: services.web.depends_on.db: "
        "service_healthy needs a healthcheck: on service 'db' (it has none)"
    ]


def test_optional_dependency_refused() -> None:
    problems = refused(
        "services:\n  a:\n    image: x\n    depends_on:\n"
        "      b: {condition: service_started, required: false}\n  b: {image: x}\n"
    )
    assert problems == [
        "line 5: services.a.depends_on.b.required: "
        "required: false is not supported: every dependency is required"
    ]


def test_image_or_build_required() -> None:
    assert "needs image: or build:" in refused("services:\n  web:\n    command: x\n")[0]


def make_project(tmp_path: Path) -> Path:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text("FROM busybox\n")
    (tmp_path / "web.env").write_text("A=1\nB=2\n")
    (tmp_path / "pw.txt").write_text("s3cret")
    (tmp_path.parent / "outside.env").write_text("X=1\n")
    return tmp_path


def test_build_env_file_and_secret_file(tmp_path: Path) -> None:
    base = make_project(tmp_path)
    text = """
    services:
      web:
        build: {context: ./app, args: {V: "1"}, target: final}
        env_file: [web.env, {path: missing.env, required: false}]
        environment: {B: override}
        secrets: [pw]
      api:
        build: app
    secrets: {pw: {file: ./pw.txt}}
    """
    project = load(text, base_dir=base)
    s = project.services["web"]
    assert s.build == BuildDef(str(base / "app"), "Dockerfile", {"V": "1"}, "final")
    assert s.image is None
    assert s.environment == {"A": "1", "B": "override"}
    assert project.services["api"].build == BuildDef(str(base / "app"))
    assert project.secrets["pw"].file == str(base / "pw.txt")


def test_paths_escaping_the_project_refused(tmp_path: Path) -> None:
    base = make_project(tmp_path)
    (base / "link.env").symlink_to("/etc/passwd")
    (base / "linkdir").symlink_to("/etc")
    problems = refused(
        """
        services:
          a:
            image: x
            env_file: ../outside.env
          b:
            image: x
            env_file: [link.env, ../../../../../../etc/shadow]
          c:
            build: {context: ../}
          d:
            build: {context: linkdir}
          e:
            build: {context: app, dockerfile: ../../outside.env}
        secrets: {s: {file: /etc/shadow}}
        """,
        base_dir=base,
    )
    assert len(problems) == 7
    assert all("leads out" in p and "project directory" in p for p in problems)
    assert [p.split(": ")[1] for p in problems] == [
        "services.a.env_file",
        "services.b.env_file[0]",
        "services.b.env_file[1]",
        "services.c.build.context",
        "services.d.build.context",
        "services.e.build.dockerfile",
        "secrets.s.file",
    ]


def test_files_without_base_dir_refused() -> None:
    problems = refused("services:\n  a:\n    build: .\n    env_file: x.env\n")
    assert len(problems) == 2 and all("needs the compose file's directory" in p for p in problems)


def test_remote_build_context_refused(tmp_path: Path) -> None:
    text = "services:\n  a:\n    build: https://github.com/x/y.git\n"
    assert "remote build contexts" in refused(text, base_dir=tmp_path)[0]


def test_network_driver_and_secret_shape() -> None:
    problems = refused("services: {}\nnetworks: {n: {driver: macvlan}}\nsecrets: {s: {}}\n")
    assert problems[0].startswith("line 2: networks.n.driver: driver 'macvlan' is refused")
    assert "exactly one of file: or external: true" in problems[1]


def test_service_digest() -> None:
    text = "services:\n  a:\n    image: x\n    deploy: {replicas: 1}\n    depends_on: [b]\n  b: {image: x}\n"
    a = load_project(text, name="p").services["a"]
    moved = load_project("\n\n" + text.replace("replicas: 1", "replicas: 4"), name="p").services["a"]
    assert service_digest(a) == service_digest(moved) and a.line != moved.line
    changed = dataclasses.replace(a, environment={"X": "1"})
    assert service_digest(changed) != service_digest(a)
    assert len(service_digest(a)) == 64
