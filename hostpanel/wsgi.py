"""The WSGI entry point: gunicorn's workers serve the panel's HTTP with it (``hostpanel.wsgi:application``).

WebSockets (live logs, terminal) stay on the ASGI server (``hostpanel.asgi``, daphne); see
scripts/run.sh for how `make run` splits one URL space between the two.
"""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hostpanel.settings")

application = get_wsgi_application()
