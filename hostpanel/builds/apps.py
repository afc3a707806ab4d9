from django.apps import AppConfig


class BuildsConfig(AppConfig):
    """Dockerfile builds of tenants' images."""

    name = "hostpanel.builds"
    label = "builds"
    verbose_name = "Builds"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from hostpanel.builds.services import (
            dispatch_on_heartbeat,
            fail_on_agent_restart,
            fail_on_host_down,
            forget_deleted_tenant,
            may_watch_build,
            redispatch_on_agent_start,
            tenants_building_on,
        )
        from hostpanel.deployments.desired import agent_started
        from hostpanel.hosts import signals
        from hostpanel.logstream import access
        from hostpanel.tenants import signals as tenant_signals
        from hostpanel.usage import signals as usage_signals

        access.register("build", may_watch_build)
        signals.agent_restarted.connect(fail_on_agent_restart, dispatch_uid="builds-fail-on-agent-restart")
        agent_started.connect(redispatch_on_agent_start, dispatch_uid="builds-redispatch-on-agent-start")
        signals.host_beat.connect(dispatch_on_heartbeat, dispatch_uid="builds-dispatch-on-heartbeat")
        signals.host_down.connect(fail_on_host_down, dispatch_uid="builds-fail-on-host-down")
        tenant_signals.tenant_gone.connect(forget_deleted_tenant, dispatch_uid="builds-forget-tenant")
        usage_signals.storing_tenants.connect(tenants_building_on, dispatch_uid="builds-storing-tenants")
