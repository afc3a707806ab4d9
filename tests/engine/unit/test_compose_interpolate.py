"""engine.compose.interpolate: every spec form, .env files, and errors that name the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.compose import ComposeError, load_project
from engine.compose.interpolate import InterpolationError, interpolate, lookup_in, parse_env_file

ENV = lookup_in({"SET": "v", "EMPTY": ""})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$SET", "v"),
        ("${SET}", "v"),
        ("a${SET}b$SET.c", "avbv.c"),
        ("$UNSET", ""),
        ("${UNSET:-d}", "d"),
        ("${EMPTY:-d}", "d"),
        ("${EMPTY-d}", ""),
        ("${UNSET-d}", "d"),
        ("${SET:-d}", "v"),
        ("${SET:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("${UNSET+alt}", ""),
        ("${UNSET:-${SET}x}", "vx"),
        ("${UNSET:-${ALSO:-deep}}", "deep"),
        ("$$SET", "$SET"),
        ("$${SET}", "${SET}"),
        ("cost: $$5", "cost: $5"),
        ("${SET:?boom}", "v"),
    ],
)
def test_forms(text: str, expected: str) -> None:
    assert interpolate(text, ENV) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("${UNSET:?give a tag}", "UNSET is required: give a tag"),
        ("${EMPTY:?}", "EMPTY is required: is empty"),
        ("${UNSET?}", "UNSET is required: is not set"),
        ("${SET", "unclosed"),
        ("$5", "write $$"),
        ("${1X}", "variable name"),
        ("${SET%x}", "invalid interpolation"),
    ],
)
def test_errors(text: str, fragment: str) -> None:
    with pytest.raises(InterpolationError) as info:
        interpolate(text, ENV)
    assert fragment in str(info.value)


def test_error_in_file_names_line() -> None:
    with pytest.raises(ComposeError) as info:
        load_project("services:\n  web:\n    image: 'busybox:${TAG:?set TAG}'\n", name="p")
    assert str(info.value.problems[0]) == "line 3: services.web.image: variable TAG is required: set TAG"


def test_env_file_syntax() -> None:
    text = "# comment\nA=1\nexport B = two # note\nC='$A lit'\nD=\"x\\n$A ${B}\"\nE\nF=a#b\nG=\n"
    got = parse_env_file(text, lookup_in({"E": "from-env"}))
    assert got == {"A": "1", "B": "two", "C": "$A lit", "D": "x\n1 two", "E": "from-env", "F": "a#b", "G": ""}
    with pytest.raises(InterpolationError, match="line 2"):
        parse_env_file("A=1\nnot a name=2\n", ENV)


def test_dotenv_and_environ_precedence(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TAG=fromfile\nPORT=81\n")
    text = "services:\n  web:\n    image: busybox:${TAG}\n    ports: ['${PORT}:80']\n"
    project = load_project(text, name="p", environ={"TAG": "fromenv"}, base_dir=tmp_path)
    web = project.services["web"]
    assert web.image == "busybox:fromenv"
    assert web.ports[0].published == 81


def test_dotenv_symlink_out_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("A=1\n")
    project = tmp_path / "proj"
    project.mkdir()
    (project / ".env").symlink_to(outside)
    with pytest.raises(ComposeError, match=r"\.env"):
        load_project("services: {}\n", name="p", base_dir=project)
