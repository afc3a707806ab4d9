"""The API's model serializers build their fields once per class (hostpanel.api.base.ModelSerializer):
each instance still gets fields of its own, the very fields DRF would have built for it."""

from __future__ import annotations

import pytest
from rest_framework import serializers

from hostpanel.api import base, builds, domains, networks, stacks
from hostpanel.api import serializers as api_serializers

MODULES = (api_serializers, builds, domains, networks, stacks)


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


SERIALIZERS = sorted(
    {c for c in _subclasses(base.ModelSerializer) if c.__module__ in {m.__name__ for m in MODULES}},
    key=lambda c: c.__qualname__,
)


def test_every_model_serializer_of_the_api_builds_its_fields_once() -> None:
    plain = [
        name
        for module in MODULES
        for name, value in vars(module).items()
        if isinstance(value, type)
        and issubclass(value, serializers.ModelSerializer)
        and not issubclass(value, base.ModelSerializer)
        and value.__module__ == module.__name__
    ]
    assert plain == [] and len(SERIALIZERS) >= 15


@pytest.mark.parametrize("cls", SERIALIZERS, ids=lambda c: c.__qualname__)
def test_fields_are_the_ones_drf_builds_and_each_instance_owns_them(cls: type) -> None:
    first, second = cls(), cls()
    drf_built = serializers.ModelSerializer.get_fields(cls())  # DRF's own, without the cache
    for serializer in (first, second):
        assert list(serializer.fields) == list(drf_built)
        for name, field in serializer.fields.items():
            assert repr(field) == repr(drf_built[name]), name
            assert field.parent is serializer and field.field_name == name
    shared = {n for n in first.fields if first.fields[n] is second.fields[n]}
    assert shared == set() and first.url_field_name == second.url_field_name
