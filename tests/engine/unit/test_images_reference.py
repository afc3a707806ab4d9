"""Image reference parsing and normalisation."""

from __future__ import annotations

import pytest

from engine.errors import InvalidReference
from engine.images.reference import Reference, normalize_tag, parse_reference, split_tag


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("busybox", "busybox:latest"),
        ("busybox:1.36", "busybox:1.36"),
        ("docker.io/library/busybox:latest", "busybox:latest"),
        ("index.docker.io/library/debian:bookworm", "debian:bookworm"),
        ("docker.io/team/app", "team/app:latest"),
        ("localhost/x:y", "localhost/x:y"),
        ("registry.example/team/app:1.2", "registry.example/team/app:1.2"),
        ("registry.example:5000/team/app", "registry.example:5000/team/app:latest"),
        ("localhost:5000/a/b/c:v_1.0-rc", "localhost:5000/a/b/c:v_1.0-rc"),
        ("my-app__x.y:TAG", "my-app__x.y:TAG"),
    ],
)
def test_normalize_tag(text: str, stored: str) -> None:
    assert normalize_tag(text) == stored


@pytest.mark.parametrize(
    "text",
    [
        "",
        " busybox",
        "BusyBox",
        "busybox:",
        "busybox:-bad",
        "busybox:" + "x" * 129,
        "a//b",
        "-app",
        "app-",
        "app@sha256:1234",
        "registry.example/Team/app",
        "bad_domain_.example/app",
        "/abs",
        "a/",
    ],
)
def test_invalid_references_are_refused(text: str) -> None:
    with pytest.raises(InvalidReference) as exc:
        parse_reference(text)
    assert "invalid image reference" in str(exc.value)


def test_digest_references() -> None:
    digest = "sha256:" + "ab" * 32
    ref = parse_reference(f"docker.io/library/busybox@{digest}")
    assert ref == Reference(name="busybox", tag=None, digest=digest)
    assert str(ref) == f"busybox@{digest}"
    ref = parse_reference(f"app:1@{digest}")
    assert (ref.tag, ref.digest) == ("1", digest)
    with pytest.raises(InvalidReference, match="cannot contain a digest"):
        normalize_tag(f"app@{digest}")


def test_split_tag_for_display() -> None:
    assert split_tag("busybox:latest") == ("busybox", "latest")
    assert split_tag("registry.example:5000/team/app:1.2") == ("registry.example:5000/team/app", "1.2")
    assert split_tag("registry.example:5000/team/app") == ("registry.example:5000/team/app", "latest")
