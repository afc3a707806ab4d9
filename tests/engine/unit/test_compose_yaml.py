"""engine.compose.yamlload: lines for every key, and hostile YAML refused with a clear problem."""

from __future__ import annotations

import pytest

from engine.compose import ComposeError, load_project
from engine.compose.yamlload import MAX_BYTES, load


def problems(text: str) -> list[str]:
    with pytest.raises(ComposeError) as info:
        load_project(text, name="p")
    return [str(p) for p in info.value.problems]


def test_lines_of_keys_and_items() -> None:
    doc = load("services:\n  web:\n    image: busybox\n    ports:\n      - 80\n      - 81\n")
    assert doc.lines[("services", "web")] == 2
    assert doc.lines[("services", "web", "ports", 1)] == 6
    assert doc.line(("services", "web", "ports", 1, "nope")) == 6


def test_billion_laughs_refused() -> None:
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]")
    text = "x-bomb:\n" + "\n".join("  " + line for line in lines) + "\nservices: {}\n"
    (message,) = problems(text)
    assert "alias bomb" in message


def test_recursive_alias_refused() -> None:
    (message,) = problems("x-a: &a [*a]\nservices: {}\n")
    assert "recursive" in message and "line 1" in message


def test_recursive_merge_refused() -> None:
    assert "recursive" in problems("x-a: &a\n  k: 1\n  <<: *a\nservices: {}\n")[0]


def test_huge_document_refused() -> None:
    (message,) = problems("services: {}\n#" + "x" * MAX_BYTES)
    assert "limit" in message


def test_deep_nesting_refused() -> None:
    (message,) = problems("x-deep: " + "[" * 2000 + "]" * 2000 + "\nservices: {}\n")
    assert "deep" in message


def test_non_mapping_root_refused() -> None:
    assert "top level must be a mapping" in problems("- a\n- b\n")[0]
    assert "empty" in problems("")[0]


def test_duplicate_key_names_both_lines() -> None:
    (message,) = problems("services:\n  web:\n    image: a\n    image: b\n")
    assert message.startswith("line 4: services.web.image: duplicate key 'image' (first on line 3)")


def test_syntax_error_names_line() -> None:
    (message,) = problems("services:\n  web:\n    image: [a\n  db: {}\n")
    assert "YAML does not parse" in message and "line" in message


def test_two_documents_refused() -> None:
    assert "single document" in problems("services: {}\n---\nservices: {}\n")[0]


def test_python_tags_refused() -> None:
    (message,) = problems("services:\n  web:\n    image: !!python/name:os.system x\n")
    assert "unsupported YAML tag" in message and "line 3" in message


def test_merge_keys_explicit_wins() -> None:
    text = (
        "x-base: &base\n  image: busybox\n  restart: always\n"
        "services:\n  web:\n    <<: *base\n    restart: 'no'\n"
    )
    web = load_project(text, name="p").services["web"]
    assert (web.image, web.restart) == ("busybox", "no")
