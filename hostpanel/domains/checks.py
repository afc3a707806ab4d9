"""System check: a TLS mode the host cannot do stops ``manage.py check``/``migrate`` with the reason."""

from __future__ import annotations

from typing import Any

from django.core.checks import Error, register

from hostpanel.domains.conf import tls_config
from hostpanel.domains.tls import problems


@register()
def tls_mode_check(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    return [
        Error(problem, hint="see README.md, 'Apps on the web'", id="hostpanel.domains.E001")
        for problem in problems(tls_config())
    ]
