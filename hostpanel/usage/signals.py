"""What usage asks the apps above it (they connect here in their ``AppConfig.ready``, so usage
never imports them: the panel's layers in pyproject.toml)."""

from __future__ import annotations

from django.dispatch import Signal

# sender=Host, host=Host: each receiver returns a set of tenant ids whose storage on that host
# counts against their storage quota although they have no replicas there (builds: the tenants
# that built there keep a build cache on it, hostpanel/builds/apps.py). The host reports their
# storage (the desired document's ``storage_tenants``) and the usage door accepts it from it.
storing_tenants = Signal()
