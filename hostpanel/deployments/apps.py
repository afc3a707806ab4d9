from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    """Apps, releases, replicas, their restart and health policies, and the scheduler."""

    name = "hostpanel.deployments"
    label = "deployments"
    verbose_name = "Deployments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from hostpanel.deployments.services import delete_tenant_apps, resource_users
        from hostpanel.tenants import signals

        signals.tenant_deleting.connect(delete_tenant_apps, dispatch_uid="deployments-delete-tenant-apps")
        signals.resource_users.connect(resource_users, dispatch_uid="deployments-resource-users")
        from hostpanel.deployments import placement
        from hostpanel.deployments.host_moves import move_off_signalled
        from hostpanel.hosts import signals as host_signals

        signals.quota_changed.connect(placement.follow_quota, dispatch_uid="deployments-follow-quota")
        host_signals.host_moving_off.connect(move_off_signalled, dispatch_uid="deployments-host-moving-off")
        host_signals.host_down.connect(placement.host_went_down, dispatch_uid="deployments-host-down")
        host_signals.room_changed.connect(placement.place_pending, dispatch_uid="deployments-place-pending")
        host_signals.placements_asked.connect(placement.placed_on_host, dispatch_uid="deployments-placed")
        # rolls go on even when no report of their hosts comes (a step that waits on time)
        host_signals.checked.connect(_advance_rolls, dispatch_uid="deployments-advance-rolls")


def _advance_rolls(**_: object) -> None:
    """``hosts.signals.checked``: the periodic host checks ran; every rolling app goes a step on."""
    from hostpanel.deployments import rollout

    rollout.advance_all()
