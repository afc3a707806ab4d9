from django.apps import AppConfig


class HostsConfig(AppConfig):
    """Hosts, heartbeats, capacity, their lifecycle, tenant purges and the reconcile tasks."""

    name = "hostpanel.hosts"
    label = "hosts"
    verbose_name = "Hosts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from hostpanel.hosts import services
        from hostpanel.tenants import signals

        signals.tenant_creating.connect(services.refuse_purging_slug, dispatch_uid="hosts-slug-free")
        signals.tenant_deleted.connect(services.purge_deleted_tenant, dispatch_uid="hosts-purge-tenant")
