from django.apps import AppConfig


class TenantsConfig(AppConfig):
    """Tenants, their members and roles, API tokens and cgroup quotas."""

    name = "hostpanel.tenants"
    label = "tenants"
    verbose_name = "Tenants"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from hostpanel.tenants import logins, watch  # noqa: F401  (connect their signal receivers)

        watch.connect_user_signals()
