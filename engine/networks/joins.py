"""Parse the networks a container joins from command-line options (pure, unit-tested).

``--network NAME`` (repeatable) or Docker's long form ``--network name=NAME,alias=A,alias=B``;
``--network-alias A`` gives the container that extra name on every network it joins.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.errors import InvalidSpec
from engine.networks.model import NetworkJoin

LONG_FORM_KEYS = ("name", "alias")


def parse_network_option(value: str) -> NetworkJoin:
    """One ``--network`` value: ``NAME`` or ``name=NAME[,alias=A...]``; InvalidSpec naming what is wrong."""
    if "=" not in value:
        if not value or "," in value:
            raise InvalidSpec(f"invalid --network {value!r}: use NAME or name=NAME,alias=ALIAS")
        return NetworkJoin(value)
    name = ""
    aliases: list[str] = []
    for item in value.split(","):
        key, sep, val = item.partition("=")
        if not sep or not val or key not in LONG_FORM_KEYS:
            raise InvalidSpec(f"invalid --network {value!r}: {item!r} is not one of name=NAME, alias=ALIAS")
        if key == "name":
            if name:
                raise InvalidSpec(f"invalid --network {value!r}: name= given twice")
            name = val
        else:
            aliases.append(val)
    if not name:
        raise InvalidSpec(f"invalid --network {value!r}: name=NAME is missing")
    return NetworkJoin(name, tuple(aliases))


def joins_from_options(networks: Sequence[str], aliases: Sequence[str]) -> tuple[NetworkJoin, ...]:
    """The networks of ``--network`` values (in order), each also with the ``--network-alias`` names."""
    joins = [parse_network_option(v) for v in networks]
    return tuple(NetworkJoin(j.name, tuple(dict.fromkeys((*j.aliases, *aliases)))) for j in joins)
