"""Normalising what tenants type into one spelling; refusing what is not a routable DNS name."""

from __future__ import annotations

import pytest

from hostpanel.domains.names import BadName, covers, display, is_under, normalise


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("WWW.Example.COM", "www.example.com"),
        ("www.example.com.", "www.example.com"),
        ("  shop.example.org  ", "shop.example.org"),
        ("Bücher.Example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("faß.de", "xn--fa-hia.de"),
        ("*.Example.com.", "*.example.com"),
    ],
)
def test_names_are_stored_in_one_spelling(raw: str, stored: str) -> None:
    assert normalise(raw) == stored


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("1.2.3.4", "IP address"),
        ("10.0.0.1.", "IP address"),
        ("::1", "IP address"),
        ("[2001:db8::1]", "IP address"),
        ("localhost", "single label"),
        ("a_b.example.com", "not a valid domain name"),
        ("-a.example.com", "not a valid domain name"),
        ("a..example.com", "not a valid domain name"),
        ("ex ample.com", "not a valid domain name"),
        ("www.*.example.com", "first label"),
        ("w*.example.com", "first label"),
        ("example.123", "all digits"),
        ("a" * 64 + ".com", "not a valid domain name"),
        (".".join(["a" * 60] * 5), "too long"),
        ("", "needed"),
        ("🙂.com", "not a valid domain name"),
        ("evil.com/path", "not a valid domain name"),
        ("evil.com:80", "not a valid domain name"),
    ],
)
def test_what_is_not_a_dns_name_is_refused_saying_why(raw: str, says: str) -> None:
    with pytest.raises(BadName, match=says):
        normalise(raw)


def test_wildcards_can_be_refused_and_cover_exactly_one_label() -> None:
    with pytest.raises(BadName, match="wildcards"):
        normalise("*.example.com", allow_wildcard=False)
    assert covers("*.example.com", "www.example.com")
    assert not covers("*.example.com", "a.b.example.com")
    assert not covers("*.example.com", "example.com")
    assert not covers("www.example.com", "www.example.com")


def test_under_and_display() -> None:
    assert is_under("a.b.localhost", "localhost") and is_under("localhost", "localhost")
    assert not is_under("notlocalhost", "localhost")
    assert is_under("*.apps.localhost", "localhost")
    assert display("xn--bcher-kva.example") == "bücher.example"
    assert display("*.xn--bcher-kva.example") == "*.bücher.example"
