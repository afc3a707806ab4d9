from django.apps import AppConfig


class BuildsConfig(AppConfig):
    """Dockerfile builds of tenants' images."""

    name = "hostpanel.builds"
    label = "builds"
    verbose_name = "Builds"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from hostpanel.builds.services import may_watch_build
        from hostpanel.logstream import access

        access.register("build", may_watch_build)
