"""Metadata instructions (ENV, LABEL, CMD ...): how each changes a stage's OCI ``config``."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from typing import Any

from engine.build.dockerfile import Instruction
from engine.build.words import process_word, split_words
from engine.errors import InvalidSpec
from engine.runtime.process import normalize_signal

DEFAULT_SHELL = ("/bin/sh", "-c")
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_PORT_RE = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?(?:/(tcp|udp|sctp))?$")


def env_dict(config: Mapping[str, Any]) -> dict[str, str]:
    """The config's Env as a dict."""
    out: dict[str, str] = {}
    for item in config.get("Env") or []:
        key, _, value = str(item).partition("=")
        out[key] = value
    return out


def set_env(config: dict[str, Any], key: str, value: str) -> None:
    """Set ``key`` in the config's Env (replacing an earlier value in place)."""
    env = env_dict(config)
    env[key] = value
    config["Env"] = [f"{k}={v}" for k, v in env.items()]


def shell_form(config: Mapping[str, Any], inst: Instruction) -> list[str]:
    """The argv of a RUN/CMD/ENTRYPOINT: the JSON form as written, else SHELL + the text."""
    if inst.json:
        return list(inst.args)
    shell = config.get("Shell") or list(DEFAULT_SHELL)
    return [*shell, " ".join(inst.args)]


def go_duration_ns(text: str) -> int | None:
    """A Go duration (``30s``, ``1m30s``, ``500ms``) in nanoseconds; None when malformed."""
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_NS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        return None
    return int(total)


def parse_duration(text: str, inst: Instruction) -> int:
    """A Go duration (``30s``, ``1m30s``, ``500ms``) in nanoseconds."""
    result = go_duration_ns(text)
    if result is None:
        raise inst.error(f"invalid duration {text!r}: use e.g. 30s, 1m30s or 500ms")
    return result


def healthcheck(config: Mapping[str, Any], inst: Instruction) -> dict[str, Any]:
    """The config's Healthcheck for a HEALTHCHECK instruction."""
    if inst.args[0].upper() == "NONE":
        if len(inst.args) != 1:
            raise inst.error("NONE takes no arguments")
        return {"Test": ["NONE"]}
    rest = inst.args[1:]
    if not rest:
        raise inst.error("CMD needs a command")
    test = ["CMD", *rest] if inst.json else ["CMD-SHELL", " ".join(rest)]
    check: dict[str, Any] = {"Test": test}
    names = {"interval": "Interval", "timeout": "Timeout", "start-period": "StartPeriod"}
    names["start-interval"] = "StartInterval"
    for flag, key in names.items():
        if flag in inst.flags:
            check[key] = parse_duration(inst.flags[flag], inst)
    if "retries" in inst.flags:
        if not inst.flags["retries"].isdigit():
            raise inst.error(f"--retries must be a whole number, not {inst.flags['retries']!r}")
        check["Retries"] = int(inst.flags["retries"])
    return check


def apply_metadata(
    config: dict[str, Any], inst: Instruction, env: Mapping[str, str], escape: str, *, cmd_set: bool
) -> str:
    """Apply ``inst`` to ``config``; returns its text after substitution (for history and cache keys).

    ``env`` is what ``$VAR`` expands to; ``cmd_set`` tells ENTRYPOINT whether this stage set
    CMD (an inherited CMD is reset, like Docker). Raises InvalidSpec naming the line.
    """
    try:
        return _apply(config, inst, env, escape, cmd_set)
    except InvalidSpec as exc:
        if exc.message.startswith("Dockerfile line"):
            raise
        raise inst.error(exc.message) from None


def _apply(
    config: dict[str, Any], inst: Instruction, env: Mapping[str, str], escape: str, cmd_set: bool
) -> str:
    name = inst.name
    env = {**env, **env_dict(config)}  # ENV wins over ARG
    if name == "ENV":
        parts = []
        for key, raw in zip(inst.args[::2], inst.args[1::2], strict=True):
            value = process_word(raw, {**env, **env_dict(config)}, escape)
            set_env(config, key, value)
            parts.append(f"{key}={value}")
        return "ENV " + " ".join(parts)
    if name == "LABEL":
        labels = dict(config.get("Labels") or {})
        parts = []
        for raw_key, raw in zip(inst.args[::2], inst.args[1::2], strict=True):
            key, value = process_word(raw_key, env, escape), process_word(raw, env, escape)
            labels[key] = value
            parts.append(f"{key}={value}")
        config["Labels"] = labels
        return "LABEL " + " ".join(parts)
    if name == "WORKDIR":
        path = process_word(inst.args[0], env, escape)
        base = config.get("WorkingDir") or "/"
        config["WorkingDir"] = posixpath.normpath(posixpath.join(base, path))
        return f"WORKDIR {config['WorkingDir']}"
    if name == "USER":
        user = process_word(inst.args[0], env, escape)
        if not user:
            raise inst.error("needs a user name or uid")
        config["User"] = user
        return f"USER {user}"
    if name == "EXPOSE":
        ports = dict(config.get("ExposedPorts") or {})
        for word in (w for raw in inst.args for w in split_words(raw, env, escape)):
            m = _PORT_RE.match(word.lower())
            if not m or not 0 < int(m.group(1)) < 65536:
                raise inst.error(f"invalid port {word!r}: use PORT[/tcp|/udp], e.g. 8080/tcp")
            ports[f"{m.group(1)}{'-' + m.group(2) if m.group(2) else ''}/{m.group(3) or 'tcp'}"] = {}
        config["ExposedPorts"] = ports
        return "EXPOSE " + " ".join(sorted(ports))
    if name == "VOLUME":
        volumes = dict(config.get("Volumes") or {})
        paths = (
            list(inst.args) if inst.json else [w for raw in inst.args for w in split_words(raw, env, escape)]
        )
        for path in paths:
            if not path.startswith("/"):
                raise inst.error(f"volume path {path!r} must be absolute")
            volumes[path] = {}
        config["Volumes"] = volumes
        return "VOLUME " + " ".join(paths)
    if name == "STOPSIGNAL":
        signal = process_word(inst.args[0], env, escape)
        normalize_signal(signal)
        config["StopSignal"] = signal
        return f"STOPSIGNAL {signal}"
    if name == "CMD":
        config["Cmd"] = shell_form(config, inst)
        return f"CMD {config['Cmd']}"
    if name == "ENTRYPOINT":
        config["Entrypoint"] = shell_form(config, inst)
        if not cmd_set:
            config.pop("Cmd", None)
        return f"ENTRYPOINT {config['Entrypoint']}"
    if name == "SHELL":
        config["Shell"] = list(inst.args)
        return f"SHELL {config['Shell']}"
    if name == "HEALTHCHECK":
        config["Healthcheck"] = healthcheck(config, inst)
        return f"HEALTHCHECK {config['Healthcheck']}"
    if name == "MAINTAINER":
        return f"MAINTAINER {process_word(inst.args[0], env, escape)}"
    raise inst.error("is not a metadata instruction")  # pragma: no cover - callers dispatch by name
