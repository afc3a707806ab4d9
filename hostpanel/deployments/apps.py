from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    """Apps, releases, replicas and their restart and health policies."""

    name = "hostpanel.deployments"
    label = "deployments"
    verbose_name = "Deployments"
    default_auto_field = "django.db.models.BigAutoField"
