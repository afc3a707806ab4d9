"""The tenants' door serves the Docker API only: `hpctl`'s operator endpoint is not on it."""

from __future__ import annotations

import pytest

from engine.cli.remote import ENDPOINT
from engine.dockerapi.http import APIError
from hostpanel.dockerapi.server import tenant_router


def test_the_tenants_door_has_no_hpctl_endpoint() -> None:
    router = tenant_router()
    for path in (ENDPOINT, f"/v1.44{ENDPOINT}"):
        with pytest.raises(APIError) as refused:
            router.resolve("POST", path)
        assert refused.value.status == 404
