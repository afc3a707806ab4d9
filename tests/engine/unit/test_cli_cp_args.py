"""`hpctl cp` argument parsing and `run -it` flags, without root."""

from __future__ import annotations

import argparse

from engine.cli import build_parser
from engine.cli.containers import spec_from_args
from engine.cli.interactive import split_location


def test_split_location_like_docker_cp() -> None:
    assert split_location("web:/etc/hosts") == ("web", "/etc/hosts")
    assert split_location("web:") == ("web", "/")
    assert split_location("./a:b") == (None, "./a:b")  # a local path with a colon
    assert split_location("/tmp/x:y") == (None, "/tmp/x:y")
    assert split_location("local.txt") == (None, "local.txt")
    assert split_location("-") == (None, "-")


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_run_flags_become_the_interactive_spec() -> None:
    foreground = spec_from_args(parse("run", "-it", "busybox", "sh"))
    assert (foreground.tty, foreground.open_stdin, foreground.stdin_once) == (True, True, True)
    background = spec_from_args(parse("run", "-dit", "busybox", "sh"))
    assert (background.tty, background.open_stdin, background.stdin_once) == (True, True, False)
    created = spec_from_args(parse("create", "-i", "busybox", "cat"))
    assert (created.tty, created.open_stdin, created.stdin_once) == (False, True, False)
    plain = spec_from_args(parse("run", "busybox", "true"))
    assert (plain.tty, plain.open_stdin) == (False, False)
