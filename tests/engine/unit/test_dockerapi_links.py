"""Parsing ``HostConfig.Links`` out of a create body (engine/dockerapi/links.py)."""

from __future__ import annotations

import pytest

from engine.dockerapi.http import APIError
from engine.dockerapi.links import take_links


def test_links_are_taken_out_of_the_body() -> None:
    body = {
        "Image": "busybox",
        "HostConfig": {"NetworkMode": "p_back", "Links": ["p_web_1:web", "/db:/me/store", "kv"]},
    }
    rest, links = take_links(body)
    assert rest == {"Image": "busybox", "HostConfig": {"NetworkMode": "p_back"}}
    assert links == [("p_web_1", "web"), ("db", "store"), ("kv", "kv")]
    assert body["HostConfig"]["Links"] == ["p_web_1:web", "/db:/me/store", "kv"]  # not changed in place


def test_no_links_leave_the_body_as_it_is() -> None:
    for body in ({"Image": "x"}, {"HostConfig": {"Links": None}}, [], {"HostConfig": "nonsense"}):
        assert take_links(body) == (body, [])


@pytest.mark.parametrize("links", ["a:b", [1], [":x"], ["/:x"]])
def test_malformed_links_are_a_400_naming_the_field(links: object) -> None:
    with pytest.raises(APIError) as caught:
        take_links({"HostConfig": {"Links": links}})
    assert caught.value.status == 400 and "HostConfig.Links" in caught.value.message
